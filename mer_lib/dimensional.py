"""Dimensional emotion recognition: per-window valence and arousal with joint cross-attention.

Praveen et al. (2023) regress valence and arousal for every time window with the JCA model and a
1 - CCC loss, and report the CCC of each dimension. RAVDESS and CREMA-D carry categorical labels
only, so the course reads per-window targets from a CSV (columns id, window, valence, arousal; window
= 0..T-1), the format of continuously annotated corpora, and `synthetic_labels` writes such a CSV for
the embedded corpus: each emotion sits at its place on Russell's circumplex and the clip's expression
rises and falls over the windows as the corpus renders it (onset, apex, offset), scaled by intensity.
These targets are a teaching fixture, not annotations.

Training goes through `mer train`'s loop (mer_lib.train.train_fold) with the task `VALENCE_AROUSAL`: the
targets ride in the clips' labels (`with_targets`), the loss is 1 - CCC and the score the mean CCC.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mer_lib import artifacts, train
from mer_lib.config import TrainConfig
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models.losses import ccc, ccc_loss
from mer_lib.models.outputs import ModelOutput
from mer_lib.models.standardized import Standardized

# (valence, arousal) on Russell's circumplex, a common placement of the basic emotions (Russell 1980).
CIRCUMPLEX = {"neutral": (0.0, 0.0), "calm": (0.4, -0.6), "happy": (0.8, 0.5), "sad": (-0.7, -0.4),
              "angry": (-0.6, 0.8), "fearful": (-0.6, 0.7), "disgust": (-0.7, 0.3), "surprised": (0.3, 0.8)}
COLUMNS = ["id", "window", "valence", "arousal"]


def synthetic_labels(manifest: pd.DataFrame, n_windows: int) -> pd.DataFrame:
    """Per-window valence/arousal targets for the clips of `manifest`: circumplex point x expression envelope.

    The envelope is a raised sine over the clip (0 at the edges, 1 mid-clip), halved for normal
    intensity, the shape the embedded corpus's faces and voices follow.
    """
    t = (np.arange(n_windows) + 0.5) / n_windows
    envelope = np.sin(np.pi * t) ** 2
    rows = []
    for clip in manifest.itertuples():
        valence, arousal = CIRCUMPLEX[clip.emotion]
        scale = 1.0 if getattr(clip, "intensity", "strong") == "strong" else 0.5
        rows += [{"id": clip.id, "window": w, "valence": valence * scale * envelope[w],
                  "arousal": arousal * scale * envelope[w]} for w in range(n_windows)]
    return pd.DataFrame(rows, columns=COLUMNS)


def read_labels(path: str | Path, ids: list[str], n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets (N, T, 2) and their mask (N, T) for `ids` from a per-window label CSV; MerError on bad files."""
    path = Path(path)
    if not path.is_file():
        raise MerError(f"{path} does not exist (a CSV with columns {', '.join(COLUMNS)})")
    table = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise MerError(f"{path} lacks the column(s) {', '.join(missing)} (needs {', '.join(COLUMNS)})")
    table = table[table["id"].isin(ids) & table["window"].between(0, n_windows - 1)]
    if table.empty:
        raise MerError(f"{path} has no labels for these clips")
    targets, mask = np.zeros((len(ids), n_windows, 2), np.float32), np.zeros((len(ids), n_windows), bool)
    row = pd.Series(range(len(ids)), index=ids)[table["id"]].to_numpy()
    window = table["window"].to_numpy(int)
    targets[row, window] = table[["valence", "arousal"]].to_numpy(np.float32)
    mask[row, window] = True
    return targets, mask


def with_targets(data: ClipData, targets: np.ndarray, mask: np.ndarray | None = None) -> ClipData:
    """`data` with per-window targets (N, T, 2) as its labels, NaN at the windows `mask` leaves unlabelled:
    the clips as the training loop passes them to `VALENCE_AROUSAL`."""
    values = torch.as_tensor(targets, dtype=torch.float32).clone()
    if mask is not None:
        values[~torch.as_tensor(mask, dtype=torch.bool)] = float("nan")
    return replace(data, labels=values)


def _labelled(targets: Tensor) -> tuple[Tensor, Tensor]:
    """(targets with zeros for NaN, mask (N, T) of the labelled windows) of `with_targets`' labels."""
    return targets.nan_to_num(), ~targets.isnan().any(-1)


def _ccc_loss(output: ModelOutput, targets: Tensor) -> Tensor:
    """1 - CCC of the predicted valence and arousal over the labelled (not NaN) windows of `targets`."""
    return ccc_loss(output.valence_arousal, *_labelled(targets))


# Valence-arousal regression in the common training loop: the 1 - CCC loss, scored by the mean CCC of the two.
VALENCE_AROUSAL = train.Task(_ccc_loss, lambda output, targets: 1.0 - _ccc_loss(output, targets).item(), "ccc")


@dataclass
class DimensionalResult:
    """A trained JCA regressor and the CCC of valence and arousal on the held-out clips, per epoch too."""

    model: Standardized  # JointCrossAttentionModel behind the training clips' z-scores
    ccc_valence: float
    ccc_arousal: float
    history: pd.DataFrame  # epoch, train_loss, train_ccc, val_loss, val_ccc (mean of valence and arousal), lr


def evaluate_ccc(model: nn.Module, data: ClipData, targets: Tensor, mask: Tensor) -> tuple[float, float]:
    """CCC of (valence, arousal) over every labelled window of `data` (mask True)."""
    pred = train.predict(model, data).valence_arousal
    values = ccc(pred.reshape(-1, 2).T, targets.reshape(-1, 2).T, mask.reshape(1, -1))
    return float(values[0]), float(values[1])


def fit_valence_arousal(train_data: ClipData, train_targets: np.ndarray, val_data: ClipData,
                        val_targets: np.ndarray, train_mask: np.ndarray | None = None,
                        val_mask: np.ndarray | None = None, epochs: int = 40, lr: float = 1e-3,
                        batch_size: int = 64, d_model: int = 128, seed: int = 0) -> DimensionalResult:
    """Train JCA's valence-arousal head (and its attention) with the 1 - CCC loss, in `mer train`'s loop
    (mer_lib.train.train_fold with `VALENCE_AROUSAL`): Adam at a constant `lr`, inputs standardised with the
    training clips' statistics, on the CPU.

    The weights of the epoch with the lowest validation 1 - CCC (the best mean CCC of valence and arousal)
    are kept; report the CCC of a third, untouched set with `evaluate_ccc`.
    """
    if set(train_data.dims()) != {"a", "v"}:
        raise MerError("valence-arousal regression with joint cross-attention needs audio and video windows")
    config = TrainConfig(model="jca", d_model=d_model, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                         schedule="constant", early_stopping=None, device="cpu")
    val = with_targets(val_data, val_targets, val_mask)
    model, history = train.train_fold(config, with_targets(train_data, train_targets, train_mask), val,
                                      desc="valence-arousal", task=VALENCE_AROUSAL)
    valence, arousal = evaluate_ccc(model, val, *_labelled(val.labels))
    return DimensionalResult(model, valence, arousal, pd.DataFrame(history))


def write_synthetic_labels(manifest: pd.DataFrame, n_windows: int, path: str | Path) -> Path:
    """`synthetic_labels` written atomically as a CSV."""
    return artifacts.write_csv(path, synthetic_labels(manifest, n_windows))
