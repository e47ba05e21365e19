"""`ModelOutput`: what every network of the course returns for a batch of B clips.

MATER, the LSTM baseline, the cross-modal model and JCA all return this one type, so training, testing,
the analyses and the figures read any of them the same way. Each model's ``forward`` takes one switch,
``return_internals``: False (training, testing) leaves ``hidden`` and ``attention`` empty; True fills
them, for the entropy analysis, the attention figures and the explorer.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ModelOutput:
    """A batch's predictions, and with ``return_internals=True`` what led to them.

    ``logits`` (B, C): the fused prediction. ``modality_logits``: "a"/"v" -> (B, C), the heads of single
    modalities where the model has them (MATER and the LSTM: one per modality; a one-stream cross-modal
    model: its own logits; JCA: none). ``embedding`` (B, D): the vector the metric losses act on (the
    cross-modal model, JCA), else None. ``valence_arousal`` (B, T, 2) in [-1, 1]: JCA's per-window
    dimensional head, else None.

    ``hidden`` (filled only when asked): MATER and the LSTM map "a"/"v" to the outputs of each layer (a list
    of N tensors (B, T, d_model)); the cross-modal model maps "D_AT", "D_VT" (the temporal attention's
    output streams) and "D_Corr_AT", "D_Corr_VT" (after the fusion) to (B, N, m'); JCA maps "X_att_a",
    "X_att_v" to the attended streams and "features" to what its heads see (B, L, d_fused).
    ``attention`` (filled only when asked): MATER and the LSTM map "a"/"v" to each layer's weights (N tensors
    (B, heads, T, T); an empty list for the LSTM and MATER without MHSA); the cross-modal model maps "VS"
    (B, N, H, s, s), "VC" (B, N, H, m, m), "VT", "AT" (B, H, N, N), "W_audio" (B, N_a, N_v) and "W_video"
    (B, N_v, N_a), for the modules it has; JCA its joint correlations "C_a" and "C_v".
    """

    logits: Tensor
    modality_logits: dict[str, Tensor] = field(default_factory=dict)
    embedding: Tensor | None = None
    valence_arousal: Tensor | None = None
    hidden: dict[str, Tensor | list[Tensor]] = field(default_factory=dict)
    attention: dict[str, Tensor | list[Tensor]] = field(default_factory=dict)


def concatenate(outputs: Sequence[ModelOutput]) -> ModelOutput:
    """The outputs of consecutive batches as one output for all their clips, in order, detached from the
    autograd graph (the predictions only: `hidden` and `attention` are asked for batch by batch)."""
    def joined(tensors: list[Tensor | None]) -> Tensor | None:
        return None if tensors[0] is None else torch.cat([t.detach() for t in tensors])

    return ModelOutput(joined([o.logits for o in outputs]),
                       {m: joined([o.modality_logits[m] for o in outputs]) for m in outputs[0].modality_logits},
                       joined([o.embedding for o in outputs]), joined([o.valence_arousal for o in outputs]))
