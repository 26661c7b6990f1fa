"""Repository-wide pytest configuration for pytest-slm's own benches and tests.

The plugin itself is loaded through its ``pytest11`` entry point (``pip install -e .``);
this file only makes the repository root importable, so the test-only fake engine can be
selected with ``--slm-engine tests.fake_engine:FakeEngine``.
"""
