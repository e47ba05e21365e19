"""The two modalities by letter: "a" (audio, the voice) and "v" (video, the face).

Settings, stores, clip tensors and models all name a modality by its letter and a combination by
the letters ("a", "v", "av"); tables, store names and messages use the word. No torch here, so the
command line reads the choices without loading the deep-learning stack.
"""
from __future__ import annotations

from mer_lib.errors import MerError

MODALITY_NAMES = {"a": "audio", "v": "video"}
MODALITIES = ("a", "v", "av")


def check_modalities(modalities: str) -> str:
    """`modalities` itself when it is "a", "v" or "av"; MerError otherwise."""
    if modalities not in MODALITIES:
        raise MerError(f"unknown modalities {modalities!r} (choose a, v or av)")
    return modalities
