"""The one slugifier: readable, filesystem- and id-safe names. Pytest-free."""

from __future__ import annotations

import re


def slug(text: str, keep: str = "._-") -> str:
    """``text`` lower-cased, every run of characters other than a-z, 0-9 and ``keep`` turned
    into one ``-``, without leading or trailing ``-``."""
    return re.sub(f"[^a-z0-9{re.escape(keep)}]+", "-", text.lower()).strip("-")
