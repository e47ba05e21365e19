"""Checkpoint files: a fold's training state or finished model, tagged with the settings that made it.

`save` writes a checkpoint atomically at the end of an epoch (model, optimiser and scheduler state,
epoch, best validation loss) and when the fold is done (the kept weights, no optimiser); `resume`
gives the training loop (mer_lib.train.train_fold) the checkpoint to continue or reuse, and refuses
one written with other settings; `read` is how every checkpoint is opened, so a damaged file or one
of an older model revision is a one-line error wherever it is loaded. The files sit in a run folder
as checkpoints/<`checkpoint_name`>.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from mer_lib import artifacts
from mer_lib.config import TrainConfig, trained_settings
from mer_lib.errors import MerError

# What a checkpoint's weights mean beyond its settings: 2 since standardised windows enter MATER at the
# positional encoding's scale (mer_lib.models.mater.input_scale) instead of sqrt(d_model) times larger;
# 3 since the learned log-mel front-end (mer_lib.models.frontend) has four convolutional blocks, not three;
# 4 since each of those blocks pools before its batch norm and ReLU.
MODEL_REVISION = 4


def checkpoint_name(fold: int, seed: int, seeds: list[int]) -> str:
    """fold<k>.pt for a single-seed run (as before seeds existed), fold<k>-seed<s>.pt with several."""
    return f"fold{fold}.pt" if len(seeds) == 1 else f"fold{fold}-seed{seed}.pt"


def save(path: Path | None, config: TrainConfig, finished: bool, **parts) -> None:
    """Write a checkpoint atomically (nothing without a path), tagged with the training settings."""
    if path is not None:
        with artifacts.atomic_path(path) as tmp:
            torch.save({"config": asdict(config), "finished": finished, "revision": MODEL_REVISION,
                        **parts}, tmp)


def read(path: Path) -> dict:
    """A checkpoint file, on the CPU; a damaged file or one of an older model revision is a one-line
    MerError, not torch's traceback or weights silently read with another meaning."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MerError(f"{path}: unreadable checkpoint ({type(err).__name__}); delete it to retrain") from None
    if checkpoint.get("revision", 1) != MODEL_REVISION:
        raise MerError(f"{path} was trained by an older version of the models (revision "
                       f"{checkpoint.get('revision', 1)}, now {MODEL_REVISION}); delete its run folder to retrain")
    return checkpoint


def resume(path: Path | None, config: TrainConfig, data: str | None = None) -> dict | None:
    """The checkpoint at `path` if there is one for this config and data (`data`: the clips' fingerprint,
    mer_lib.features.corpus.Corpus; a checkpoint of other clips or embeddings is None: trained again, and one
    written before fingerprints were recorded is taken); MerError when it belongs to other settings."""
    if path is None or not Path(path).is_file():
        return None
    checkpoint = read(path)
    if trained_settings(checkpoint.get("config", {})) != trained_settings(config):  # later settings: defaults
        raise MerError(f"{path} was written with other training settings; delete it or use another run folder")
    return None if other_data(checkpoint.get("data"), data) else checkpoint


def other_data(recorded: str | None, data: str | None) -> bool:
    """Whether something recorded for data of fingerprint `recorded` is of other data than `data` (a
    fingerprint missing on either side, written before they were recorded or not asked for: not compared)."""
    return recorded is not None and data is not None and recorded != data
