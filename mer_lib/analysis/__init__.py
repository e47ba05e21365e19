"""Analyses of trained models from the MATER journal paper (Ghaleb et al. 2023, sections 4.2.1, 5 and 6).

- ``entropy``: entropies of the audio and video predictions and of each encoder layer (section 4.2.1).
- ``noise``: Gaussian noise in time windows at test time and in training (Algorithm 1, section 5),
  missing modalities, and noise at a given SNR in raw audio.
- ``temporal``: incremental evaluation over the first t windows and response times (section 6).

The helpers here are shared by those modules: where a model lives, and the accuracy of each head.
Submodules are imported on use (``from mer_lib.analysis import noise``), so importing this package
stays cheap.
"""
from __future__ import annotations

import torch
from torch import nn

HEADS = ("fused", "a", "v")  # the fused prediction and the per-modality heads of a late-fusion model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (or buffers); CPU for a model with neither."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def head_logits(output) -> dict[str, torch.Tensor]:
    """{"fused": logits, "a": ..., "v": ...} of a MaterOutput, for the heads the model has."""
    return {"fused": output.logits} | {m: output.modality_logits[m] for m in ("a", "v") if m in output.modality_logits}


def accuracy_column(head: str) -> str:
    """The column name of a head's accuracy: "accuracy" (fused), "accuracy_a", "accuracy_v"."""
    return "accuracy" if head == "fused" else f"accuracy_{head}"


def accuracies(output, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of every head of `output` against `labels`, keyed by `accuracy_column`."""
    labels = labels.to(output.logits.device)
    return {accuracy_column(head): (logits.argmax(1) == labels).float().mean().item()
            for head, logits in head_logits(output).items()}
