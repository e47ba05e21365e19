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


def write_tone_clips(root: Path, actors=(1, 2), emotions=(1, 3, 4, 5), repetitions=(1, 2), seconds: float = 1.2,
                     rate: int = 16000) -> list[Path]:
    """Tiny RAVDESS-named audio-only clips under root/Actor_XX: a tone whose pitch follows emotion and actor."""
    import numpy as np

    from mer_lib import media

    paths = []
    t = np.arange(int(seconds * rate)) / rate
    for actor in actors:
        for emotion in emotions:
            for repetition in repetitions:
                pitch = 120 + 40 * emotion + 7 * actor + 3 * repetition
                tone = 0.3 * np.sin(2 * np.pi * pitch * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
                path = root / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-{repetition:02d}-{actor:02d}.wav"
                paths.append(media.write_wav(path, tone.astype(np.float32), rate))
    return paths


@pytest.fixture()
def tone_clips():
    """The writer of tiny RAVDESS-named audio clips (`write_tone_clips`), for tests that build a data folder."""
    return write_tone_clips
