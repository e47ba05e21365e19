"""Shared fixtures: where the real media samples are, and small helpers for tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("MER_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real RAVDESS / CREMA-D samples; the test is skipped when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real media samples not found at {REAL_DATA} (set MER_REAL_DATA to point at them)")
    return REAL_DATA
