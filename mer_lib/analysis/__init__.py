"""Analyses of trained models from the MATER journal paper (Ghaleb et al. 2023, sections 4.2.1, 5 and 6).

- ``entropy``: entropies of the audio and video predictions and of each encoder layer (section 4.2.1).
- ``noise``: Gaussian noise in time windows at test time and in training (Algorithm 1, section 5),
  missing modalities, and noise at a given SNR in raw audio.
- ``temporal``: incremental evaluation over the first t windows and response times (section 6).

The helpers here are shared by those modules and the notebooks: where a model lives, the accuracy
of each head, the two models the paper compares, and running an analysis over every fold of a run.
Submodules are imported on use (``from mer_lib.analysis import noise``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mer_lib import grids, run_folder

HEADS = ("fused", "a", "v")  # the fused prediction and the per-modality heads of a late-fusion model
# Sections 5 and 6 compare MATER "with attention" (PE and MHSA) and "without attention", the baseline.
COMPARED = {"attention": {"pe": True, "mhsa": True}, "baseline": {"pe": False, "mhsa": False}}


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (or buffers); CPU for a model with neither."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def head_logits(output) -> dict[str, torch.Tensor]:
    """{"fused": logits, "a": ..., "v": ...} of a ModelOutput, for the heads the model has."""
    return {"fused": output.logits} | {m: output.modality_logits[m] for m in ("a", "v") if m in output.modality_logits}


def accuracy_column(head: str) -> str:
    """The column name of a head's accuracy: "accuracy" (fused), "accuracy_a", "accuracy_v"."""
    return "accuracy" if head == "fused" else f"accuracy_{head}"


def accuracies(output, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of every head of `output` against `labels`, keyed by `accuracy_column`."""
    labels = labels.to(output.logits.device)
    return {accuracy_column(head): (logits.argmax(1) == labels).float().mean().item()
            for head, logits in head_logits(output).items()}


def compared_runs(data_dir: str | Path, runs_dir: str | Path, modalities: str = "av", train_noise: str | None = None,
                  **training) -> dict[str, Path]:
    """Cross-validate the attention model and the baseline (`COMPARED`) on `modalities`, with
    Algorithm 1's noise in `train_noise` when given; finished folds are only loaded.

    `training` goes to ``grids.cross_validate_grid`` (preset, folds, stores, model size...).
    Returns {"attention": run folder, "baseline": run folder}.
    """
    grid = [{"modalities": modalities, "train_noise": train_noise} | settings for settings in COMPARED.values()]
    return dict(zip(COMPARED, grids.cross_validate_grid(data_dir, runs_dir, grid, **training).values()))


def over_folds(trained: run_folder.TrainedRun, analysis, **options) -> pd.DataFrame:
    """`analysis(model, test clips, **options)` for every fold of a trained run, each fold's model on
    the actors it never saw; the tables concatenated with a fold column first."""
    tables = [analysis(model, trained.test_data(fold), **options).assign(fold=fold)
              for fold, model in trained.models.items()]
    table = pd.concat(tables, ignore_index=True)
    return table[["fold"] + [c for c in table if c != "fold"]]


def mean_over_folds(table: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """The mean of every other column per value of `by` (in order of appearance), over the folds; the
    fold column is dropped."""
    return table.drop(columns="fold").groupby(by, sort=False).mean().reset_index()


def stack(tables: dict[str, pd.DataFrame], key: str = "model") -> pd.DataFrame:
    """Several tables as one, with a `key` column first naming the table each row comes from."""
    return pd.concat([table.assign(**{key: name})[[key] + list(table.columns)] for name, table in tables.items()],
                     ignore_index=True)
