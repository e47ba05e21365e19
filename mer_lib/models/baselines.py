"""Recurrent baseline: an LSTM over the time windows of each modality, with MATER's late fusion.

The MATER papers compare the attention framework against LSTM approaches (Ghaleb et al. 2023,
section 4; Beard et al. 2018's dual-attention LSTM). This baseline keeps everything of MATER but the
temporal model: the same input projection, a stack of LSTM layers in place of the encoder layers,
masked mean pooling over the valid windows (or the last valid window's state), one fully connected
head per modality and the logit-mean fusion, with the same forward signature and output.

Padded windows are zeroed before the recurrence, so their values never reach the output; the
layers are separate single-layer LSTMs so that each layer's outputs can be returned for analysis.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mer_lib.data.modalities import check_modalities
from mer_lib.errors import MerError
from mer_lib.models.mater import LateFusion, input_projection, masked_mean

POOLING = ("mean", "last")


@dataclass
class LstmConfig:
    """Architecture of the LSTM baseline; sizes mirror MaterConfig so that runs compare directly."""

    n_classes: int = 8
    modalities: str = "av"
    d_audio: int = 512
    d_video: int = 512
    d_model: int = 512
    layers: int = 2
    dropout: float = 0.1
    pooling: str = "mean"  # "mean" over valid windows, or the "last" valid window's state

    def __post_init__(self):
        check_modalities(self.modalities)
        if self.pooling not in POOLING:
            raise MerError(f"unknown pooling {self.pooling!r} (choose {' or '.join(POOLING)})")


def last_valid(h: Tensor, mask: Tensor) -> Tensor:
    """The state h[:, t] at each clip's last valid window (B, d); zeros for a clip with none."""
    order = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    last = (mask.long() * order).argmax(1)
    picked = h[torch.arange(h.shape[0], device=h.device), last]
    return picked * mask.any(1, keepdim=True).to(h.dtype)


class LstmEncoder(nn.Module):
    """One modality's branch: projection, N LSTM layers (dropout between), pooling, FC head."""

    def __init__(self, config: LstmConfig, d_in: int):
        super().__init__()
        self.pooling = config.pooling
        self.proj = input_projection(d_in, config.d_model)
        self.layers = nn.ModuleList(nn.LSTM(config.d_model, config.d_model, batch_first=True)
                                    for _ in range(config.layers))
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.n_classes)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(logits (B, C), per-layer outputs (B, T, d_model), no attention) for windows x (B, T, d_in)."""
        h = self.proj(x) * mask.unsqueeze(-1).to(x.dtype)
        hidden = []
        for i, layer in enumerate(self.layers):
            h, _ = layer(self.dropout(h) if i else h)
            hidden.append(h)
        pooled = masked_mean(h, mask) if self.pooling == "mean" else last_valid(h, mask)
        return self.head(pooled), hidden, []


class LstmBaseline(LateFusion):
    """LSTM per modality with MATER's pooling, heads and logit-mean fusion."""

    def __init__(self, config: LstmConfig):
        dims = {"a": config.d_audio, "v": config.d_video}
        super().__init__({m: LstmEncoder(config, dims[m]) for m in config.modalities})
        self.config = config
