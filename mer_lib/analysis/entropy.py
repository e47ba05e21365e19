"""Entropy analysis of MATER (Ghaleb et al. 2023, section 4.2.1 and Figure 4).

Why does attention help the audio-visual model much more than the unimodal ones? The paper looks at
how uncertain each modality's prediction is: the Shannon entropy H(p) = -sum_c p_c log p_c of the
audio and video softmax outputs, and the gap |H_a - H_v| between them. With MHSA and PE the two
entropies are closer, and the late fusion (averaged logits, eq. 3) is then more certain and more
often right. It also measures the entropy of each encoder layer's window representations after a
softmax over their d dimensions (Figure 4): with MHSA the audio and video curves come together in
the later layers, in the baseline they drift apart.

All entropies are in nats (natural logarithm).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import special, stats
from torch import Tensor, nn
from tqdm.auto import tqdm

from mer_lib.analysis import head_logits, model_device
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError

MEASURES = ("entropy_a", "entropy_v", "entropy_gap", "kl_av", "entropy_fused", "correct", "correct_a", "correct_v")
_KEPT = ("id", "fold", "actor", "emotion", "label")  # columns of predictions.csv carried into the table


def entropy(p, dim: int = -1):
    """Shannon entropy (nats) of the probability vectors along `dim`; 0 log 0 counts as 0.

    Works on torch tensors and NumPy arrays alike and returns the same kind.
    """
    if isinstance(p, Tensor):
        return -torch.special.xlogy(p, p).sum(dim)
    p = np.asarray(p, dtype=float)
    return -special.xlogy(p, p).sum(dim)


def kl_divergence(p, q, dim: int = -1):
    """KL(p || q) = sum_c p_c log(p_c / q_c) in nats along `dim` (inf where q_c = 0 < p_c)."""
    if isinstance(p, Tensor):
        q = torch.as_tensor(q, dtype=p.dtype, device=p.device)
        return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(dim)
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return (special.xlogy(p, p) - special.xlogy(p, q)).sum(dim)


def _entropy_table(probs: dict[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """The per-clip measures from the softmax outputs of each head ("fused", "a", "v"; (N, C) each).

    A one-modality model (e.g. audio only) gets its head's entropy and correctness; the gap and the
    KL divergence need both heads and are left out without them.
    """
    heads = [m for m in ("a", "v") if m in probs]
    if not heads:
        raise MerError("the entropy analysis needs the audio or video head's predictions (p_a_<class>, p_v_<class>)")
    labels = np.asarray(labels)
    h = {m: entropy(probs[m]) for m in heads}
    table = {"label": labels} | {f"entropy_{m}": h[m] for m in heads}
    if len(heads) == 2:
        table |= {"entropy_gap": np.abs(h["a"] - h["v"]), "kl_av": kl_divergence(probs["a"], probs["v"])}
    table |= {"entropy_fused": entropy(probs["fused"]), "correct": probs["fused"].argmax(1) == labels}
    return pd.DataFrame(table | {f"correct_{m}": probs[m].argmax(1) == labels for m in heads})


def prediction_entropies(output, labels, classes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per clip: entropy_a, entropy_v, entropy_gap = |H_a - H_v|, kl_av = KL(p_a || p_v),
    entropy_fused, and whether the fused, audio and video predictions are right (correct, correct_a,
    correct_v), from a ModelOutput (e.g. ``train.predict``). With `classes`, an emotion column too.
    A one-modality model's table has its head's columns only (no gap or KL).
    """
    probs = {head: logits.detach().float().softmax(1).cpu().numpy() for head, logits in head_logits(output).items()}
    labels = torch.as_tensor(labels).cpu().numpy()
    table = _entropy_table(probs, labels)
    if classes is not None:
        table.insert(0, "emotion", np.asarray(classes)[labels])
    return table


def entropies_from_predictions(df: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """`prediction_entropies` from a run's predictions.csv (columns p_<class>, p_a_<class>, p_v_<class>, label).

    The id, fold, actor and emotion columns are kept, so the table can be grouped by them.
    """
    probs = {}
    for head, prefix in (("fused", "p_"), ("a", "p_a_"), ("v", "p_v_")):
        columns = [f"{prefix}{c}" for c in classes]
        if all(c in df for c in columns):
            probs[head] = df[columns].to_numpy(dtype=float)
    if "fused" not in probs or "label" not in df:
        raise MerError("not a predictions table: it needs a label column and p_<class> columns for "
                       f"{', '.join(classes)}")
    table = _entropy_table(probs, df["label"].to_numpy())
    kept = df[[c for c in _KEPT if c in df and c != "label"]].reset_index(drop=True)
    return pd.concat([kept, table], axis=1)


@torch.no_grad()
def layer_entropies(model: nn.Module, data, batch_size: int = 256) -> pd.DataFrame:
    """Mean entropy of each encoder layer's window representations, per modality (Figure 4).

    Each window's d_model-dimensional output of layer l goes through a softmax over its dimensions;
    the entropy of that distribution is averaged over all present (mask True) windows of all clips.
    Rows: modality ("a"/"v"), layer (1..N), entropy. The maximum possible value is log(d_model).
    """
    model.eval()
    device = model_device(model)
    sums: dict[tuple[str, int], Tensor] = {}
    counts: dict[str, Tensor] = {}
    for index in tqdm(torch.arange(len(data)).split(batch_size), desc="layer entropies", leave=False, disable=None):
        batch = data.take(index).to(device)
        output = model(**batch.inputs(), return_internals=True)
        for m in (m for m in MODALITY_NAMES if m in output.hidden):  # the per-layer lists of MATER and the LSTM
            layers = output.hidden[m]
            mask = batch.inputs()[f"{MODALITY_NAMES[m]}_mask"]
            mask = torch.ones(layers[0].shape[:2], dtype=torch.bool, device=device) if mask is None else mask.bool()
            counts[m] = counts.get(m, 0) + mask.sum()
            for layer, h in enumerate(layers, start=1):
                per_window = entropy(h.float().softmax(-1))
                sums[m, layer] = sums.get((m, layer), 0) + per_window[mask].sum()
    if not sums:
        raise MerError("the model returned no per-layer hidden states: it has no encoder layers to analyse")
    rows = [{"modality": m, "layer": layer, "entropy": (total / counts[m].clamp(min=1)).item()}
            for (m, layer), total in sums.items()]
    return pd.DataFrame(rows)


def gap_correctness(df: pd.DataFrame) -> dict:
    """How the entropy gap goes with fused correctness (the link section 4.2.1 draws).

    Returns the point-biserial correlation r (Pearson's r between entropy_gap and correct as 0/1)
    with its p-value, and the mean gap of the correct and of the wrong clips (NaN when a group is
    empty; r and p are NaN when every clip is right or every clip is wrong).
    """
    gap, correct = df["entropy_gap"].to_numpy(float), df["correct"].to_numpy(bool)
    r = p = float("nan")
    if 0 < correct.sum() < len(correct) and np.ptp(gap) > 0:
        r, p = (float(v) for v in stats.pointbiserialr(correct, gap))
    return {"r": r, "p_value": p, "mean_gap_correct": _mean(gap[correct]), "mean_gap_wrong": _mean(gap[~correct]),
            "n_correct": int(correct.sum()), "n_wrong": int((~correct).sum())}


def _mean(values: np.ndarray) -> float:
    """The mean, or NaN for no values (without NumPy's warning)."""
    return float(values.mean()) if len(values) else float("nan")


def summarise(df: pd.DataFrame, by: str | list[str] = "emotion") -> pd.DataFrame:
    """Mean of each measure (entropies, gap, KL, correctness rates) per group of `by`, with the clip count n."""
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in df]
    if missing:
        raise MerError(f"cannot summarise by {', '.join(missing)}: the table has no such column "
                       f"(it has {', '.join(df.columns)})")
    measures = [m for m in MEASURES if m in df]
    grouped = df.groupby(keys, sort=True)
    return grouped[measures].mean().astype(float).assign(n=grouped.size()).reset_index()


def layer_gap(table: pd.DataFrame) -> pd.DataFrame:
    """Per encoder layer the mean audio and video entropies of `layer_entropies` rows (averaged over
    folds, if any) and their gap |H_a - H_v|, the quantity Figure 4 shows shrinking with attention."""
    wide = table.pivot_table(index="layer", columns="modality", values="entropy", aggfunc="mean")
    if not {"a", "v"} <= set(wide.columns):
        raise MerError("the layer gap needs audio and video layer entropies: use a model trained on both (av)")
    return pd.DataFrame({"layer": wide.index, "entropy_a": wide["a"].to_numpy(), "entropy_v": wide["v"].to_numpy(),
                         "entropy_gap": (wide["a"] - wide["v"]).abs().to_numpy()})
