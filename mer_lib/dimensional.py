"""Dimensional emotion recognition: per-window valence and arousal with joint cross-attention.

Praveen et al. (2023) regress valence and arousal for every time window with the JCA model and a
1 - CCC loss, and report the CCC of each dimension. RAVDESS and CREMA-D carry categorical labels
only, so the course reads per-window targets from a CSV (columns id, window, valence, arousal; window
= 0..T-1), the format of continuously annotated corpora, and `synthetic_labels` writes such a CSV for
the embedded corpus: each emotion sits at its place on Russell's circumplex and the clip's expression
rises and falls over the windows as the corpus renders it (onset, apex, offset), scaled by intensity.
These targets are a teaching fixture, not annotations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mer_lib import artifacts, train
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models.jca import JcaConfig, JointCrossAttentionModel
from mer_lib.models.losses import ccc, ccc_loss
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


@dataclass
class DimensionalResult:
    """A trained JCA regressor and the CCC of valence and arousal on the held-out clips, per epoch too."""

    model: JointCrossAttentionModel
    ccc_valence: float
    ccc_arousal: float
    history: pd.DataFrame  # epoch, train_loss, val_ccc_valence, val_ccc_arousal


def evaluate_ccc(model: JointCrossAttentionModel, data: ClipData, targets: torch.Tensor,
               mask: torch.Tensor) -> tuple[float, float]:
    """CCC of (valence, arousal) over every labelled window of `data` (mask True)."""
    model.eval()
    with torch.no_grad():
        pred = model(**data.inputs()).valence_arousal
    flat = mask.reshape(1, -1)
    values = ccc(pred.reshape(-1, 2).T, targets.reshape(-1, 2).T, flat)
    return float(values[0]), float(values[1])


def fit_valence_arousal(train_data: ClipData, train_targets: np.ndarray, val_data: ClipData,
                        val_targets: np.ndarray, train_mask: np.ndarray | None = None,
                        val_mask: np.ndarray | None = None, epochs: int = 40, lr: float = 1e-3,
                        batch_size: int = 64, d_model: int = 128, seed: int = 0) -> DimensionalResult:
    """Train JCA's valence-arousal head (and its attention) with the 1 - CCC loss.

    The weights of the epoch with the best mean validation CCC are kept; report the CCC of a third,
    untouched set with `evaluate_ccc`. Inputs are standardised with the training clips' statistics,
    as in `mer train`.
    """
    train.seed_everything(seed)
    def full(x, m):
        return torch.ones(x.shape[:2], dtype=torch.bool) if m is None else torch.as_tensor(m)
    y_train, m_train = torch.as_tensor(train_targets), full(train_targets, train_mask)
    y_val, m_val = torch.as_tensor(val_targets), full(val_targets, val_mask)
    dims = train_data.dims()
    if set(dims) != {"a", "v"}:
        raise MerError("valence-arousal regression with joint cross-attention needs audio and video windows")
    jca = JointCrossAttentionModel(JcaConfig(train_data.n_classes or 1, train_data.n_windows, dims["a"], dims["v"],
                                             d_model=d_model))
    model = Standardized(jca, dims).fit(train_data)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best, history = (-np.inf, None, None), []
    for epoch in tqdm(range(epochs), desc="valence-arousal", leave=False, disable=None):
        model.train()
        losses = []
        for index in torch.randperm(len(train_data)).split(batch_size):
            output = model(**train_data.take(index).inputs())
            loss = ccc_loss(output.valence_arousal, y_train[index], m_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scores = evaluate_ccc(model, val_data, y_val, m_val)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_ccc_valence": scores[0],
                        "val_ccc_arousal": scores[1]})
        if np.mean(scores) > best[0]:
            best = (float(np.mean(scores)), scores, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return DimensionalResult(model.eval(), best[1][0], best[1][1], pd.DataFrame(history))


def write_synthetic_labels(manifest: pd.DataFrame, n_windows: int, path: str | Path) -> Path:
    """`synthetic_labels` written atomically as a CSV."""
    return artifacts.write_csv(path, synthetic_labels(manifest, n_windows))
