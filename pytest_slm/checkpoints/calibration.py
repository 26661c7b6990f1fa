"""Calibration data for quantization: a generated default, local files, or a hub dataset id.

With no hub, the default is a deterministic set of varied English texts that pytest-slm
generates itself (explanations, dialogues, arithmetic word problems, short programs), so
quantization works offline and the same set — hence the same cache key — comes out every time.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

GENERATED_ID = "pytest-slm-generated/v1"


class CalibrationError(ValueError):
    """Calibration data that cannot be read, or holds fewer samples than asked for."""


@dataclass(frozen=True)
class Calibration:
    """Where calibration samples come from and what identifies them in the cache key.

    ``texts`` is set for generated and local data; a hub dataset is loaded inside the
    quantization subprocess (``hub_id``/``split``), so ``texts`` is None then.
    """

    source: str
    identity: str
    texts: tuple[str, ...] | None = None
    hub_id: str | None = None
    split: str | None = None
    generated: bool = False


_TOPICS = [
    ("a bicycle", "gears", "the chain turns the rear wheel"),
    ("a volcano", "magma", "pressure builds under the crust"),
    ("a bank loan", "interest", "the balance grows each month"),
    ("a compiler", "syntax trees", "source becomes machine code"),
    ("photosynthesis", "chlorophyll", "light turns water and carbon dioxide into sugar"),
    ("a heat pump", "refrigerant", "heat moves from a cold place to a warm one"),
    ("the stock market", "shares", "prices follow supply and demand"),
    ("a vaccine", "antibodies", "the body learns a shape"),
    ("a sailing boat", "the keel", "wind pushes against the sail at an angle"),
    ("a database index", "B-trees", "lookups skip most of the table"),
    ("the moon's phases", "sunlight", "we see a lit half from the side"),
    ("bread dough", "yeast", "gas bubbles make the loaf rise"),
    ("an electric motor", "magnets", "current makes a force on a wire"),
    ("a library", "catalogues", "books are shelved by subject"),
    ("rainfall", "clouds", "droplets join until they fall"),
    ("a chess opening", "the centre", "pieces develop toward the middle"),
    ("a river delta", "sediment", "slow water drops sand"),
    ("a solar panel", "silicon", "photons free electrons"),
    ("a queue at a shop", "cashiers", "waiting time grows with arrivals"),
    ("a marathon", "glycogen", "muscles run low on stored fuel"),
]
_NAMES = [
    "Ana",
    "Bilal",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
]
_ITEMS = [("apples", 3), ("notebooks", 4), ("tickets", 12), ("plants", 7), ("books", 9), ("cakes", 5), ("bolts", 2)]


def _explanation(rng: random.Random) -> str:
    thing, part, idea = rng.choice(_TOPICS)
    other = rng.choice(_TOPICS)
    return (
        f"How does {thing} work? The short answer is that {idea}. To see why, start with {part}. "
        f"Without {part}, nothing else in {thing} would matter, because every later step depends on it. "
        f"A useful comparison is {other[0]}: there too, {other[2]}, and {other[1]} plays a similar role. "
        f"People often get one detail wrong: they think the effect is instant. In practice it takes time, "
        f"and the rate depends on conditions such as temperature, size and how much load there is. "
        f"If you remember one thing, remember that {idea}."
    )


def _dialogue(rng: random.Random) -> str:
    a, b = rng.sample(_NAMES, 2)
    thing, part, idea = rng.choice(_TOPICS)
    return (
        f"User: {a} here. Can you explain {thing} to me like I'm new to it?\n"
        f"Assistant: Of course, {a}. The key idea is that {idea}. The part to look at first is {part}.\n"
        f"User: My friend {b} says it is more complicated than that.\n"
        f"Assistant: {b} is right that there are details, but the core stays simple. Once you understand "
        f"{part}, the rest follows. Would you like a worked example?\n"
        f"User: Yes please, keep it short."
    )


def _word_problem(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    item, price = rng.choice(_ITEMS)
    n, m = rng.randint(2, 40), rng.randint(1, 9)
    total = n * price + m * price
    return (
        f"Question: {name} buys {n} {item} at ${price} each, then buys {m} more the next day. "
        f"How much does {name} spend in total?\n"
        f"Answer: The first purchase costs {n} * {price} = {n * price} dollars. The second costs "
        f"{m} * {price} = {m * price} dollars. Together that is {n * price} + {m * price} = {total} dollars.\n"
        f"#### {total}"
    )


def _program(rng: random.Random) -> str:
    fname = rng.choice(["total", "average", "count_even", "largest", "running_sum"])
    bodies = {
        "total": "    result = 0\n    for x in values:\n        result += x\n    return result",
        "average": "    if not values:\n        raise ValueError('no values')\n    return sum(values) / len(values)",
        "count_even": "    return sum(1 for x in values if x % 2 == 0)",
        "largest": (
            "    best = values[0]\n    for x in values[1:]:\n"
            "        if x > best:\n            best = x\n    return best"
        ),
        "running_sum": (
            "    out, acc = [], 0\n    for x in values:\n        acc += x\n        out.append(acc)\n    return out"
        ),
    }
    data = [rng.randint(-20, 99) for _ in range(rng.randint(3, 8))]
    return (
        f"Here is a small Python function named {fname}:\n\n"
        f'def {fname}(values):\n    """Compute the {fname.replace("_", " ")} of a list of numbers."""\n'
        f"{bodies[fname]}\n\nCalling {fname}({data}) shows how it behaves on a short list."
    )


def generated_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct, deterministic calibration texts."""
    rng = random.Random(seed)
    makers = [_explanation, _dialogue, _word_problem, _program]
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        text = makers[len(out) % len(makers)](rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _read_local(path: Path) -> list[str]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".txt", ".json")) if path.is_dir() else [path]
    texts: list[str] = []
    for f in files:
        raw = f.read_text(encoding="utf-8")
        if f.suffix in (".jsonl", ".json"):
            for i, line in enumerate(raw.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise CalibrationError(f"{f}:{i}: not a JSON line ({exc})") from None
                text = row.get("text") or row.get("question") if isinstance(row, dict) else None
                if not isinstance(text, str):
                    raise CalibrationError(f"{f}:{i}: a calibration row needs a 'text' (or 'question') string")
                texts.append(text)
        else:
            texts.extend(p.strip() for p in raw.split("\n\n") if p.strip())
    return texts


def resolve_calibration(dataset: str | None, split: str, num_samples: int) -> Calibration:
    """Pick the calibration source; local and generated data are read here and checked for size."""
    if dataset is None:
        texts = generated_texts(num_samples)
        return Calibration(GENERATED_ID, _digest(texts), tuple(texts), generated=True)
    path = Path(dataset).expanduser()
    if path.exists():
        texts = _read_local(path)
        if len(texts) < num_samples:
            raise CalibrationError(
                f"calibration data {path} has {len(texts)} samples; {num_samples} were asked for "
                f"(--slm-num-calibration-samples). Pass a smaller number or more data."
            )
        texts = texts[:num_samples]
        return Calibration(str(path.resolve()), _digest(texts), tuple(texts))
    if dataset.count("/") == 1 and not dataset.startswith((".", "/")):
        return Calibration(dataset, f"hub:{dataset}:{split}", hub_id=dataset, split=split)
    raise CalibrationError(f"calibration dataset {dataset!r}: no such file or directory, and not a hub id (org/name)")


def _digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()
