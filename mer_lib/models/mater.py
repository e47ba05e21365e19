"""MATER: Multimodal Attention mechanisms for Temporal Emotion Recognition (Ghaleb et al. 2020, 2023).

One Transformer encoder per modality runs over the clip's T time windows (section 3.2 of the 2023
paper): the window embeddings x^(m)(t), m in {a, v}, are projected to d_model when their size
differs and scaled so that their components are of order 1 like those of the sinusoidal
positional encoding (the ratio Vaswani et al. 2017, section 3.4, obtain by multiplying embeddings of
scale 1/sqrt(d_model) by sqrt(d_model); see `ModalityEncoder`), the PE is added, and N stacked
encoder layers follow, each a multi-head self-attention (MHSA; mer_lib.models.attention, the cross-modal
model's too) sublayer and a position-wise feed-forward sublayer, with "LayerNorm(x + Sublayer(x))"
around both (post-norm, as in Vaswani et al.). The encoder outputs are mean-pooled over the clip's
windows (eq. 2), a fully connected layer per modality predicts the emotion, and the two modalities'
predictions are averaged (eq. 3, decision-level fusion); the averaged logits go through softmax and
cross-entropy.

Switches for the paper's ablations (Table 1): ``pe=False`` drops the positional encoding,
``mhsa=False`` drops the attention sublayers entirely (no attention parameters) while keeping the
feed-forward sublayers and the depth: the "baseline" that averages windows without weighing them.

Padded windows (mask False) are never attended to and never pooled, so their values cannot change
the output. A clip whose windows are all missing in one modality (missing audio or face) gets a
zero pooled vector there, and the fusion averages only over the modalities the clip has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mer_lib.data.modalities import MODALITY_NAMES, check_modalities
from mer_lib.errors import MerError
from mer_lib.models.attention import MultiHeadSelfAttention
from mer_lib.models.frontend import ConvFrontEnd
from mer_lib.models.outputs import ModelOutput
from mer_lib.models.registry import FRONTENDS

INPUT_SCALES = ("standardised", "l2")


@dataclass
class MaterConfig:
    """Architecture of MATER; defaults are the paper's (d = 512, 8 heads, 6 layers, Vaswani's FF and dropout)."""

    n_classes: int = 8
    modalities: str = "av"  # "a", "v" or "av"
    d_audio: int = 512  # size of the audio window embeddings
    d_video: int = 512  # size of the video window embeddings
    d_model: int = 512
    heads: int = 8
    layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    pe: bool = True
    mhsa: bool = True
    frontend: str = "linear"  # audio windows: "linear" (stored embeddings) or "conv" (learned from log-mel patches)
    inputs: str = "standardised"  # what the windows arrive as: "standardised" (z-scored) or "l2" (unit length)

    def __post_init__(self):
        check_modalities(self.modalities)
        if self.frontend not in FRONTENDS:
            raise MerError(f"unknown audio front-end {self.frontend!r} (choose {' or '.join(FRONTENDS)})")
        if self.inputs not in INPUT_SCALES:
            raise MerError(f"unknown window scaling {self.inputs!r} (choose {' or '.join(INPUT_SCALES)})")
        if self.mhsa and self.d_model % self.heads:
            raise MerError(f"d_model {self.d_model} is not divisible by {self.heads} heads")


def sinusoidal_encoding(n_positions: int, d_model: int) -> Tensor:
    """PE(t, 2i) = sin(t / 10000^(2i/d)), PE(t, 2i+1) = cos(t / 10000^(2i/d)); shape (n_positions, d)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / 10000.0 ** (two_i / d_model)
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


def input_projection(d_in: int, d_model: int) -> nn.Module:
    """A linear map of the window embeddings to d_model, or the identity when the sizes agree.

    The weights start as N(0, 1/d_in), so the projection keeps the scale of its input's components
    (PyTorch's default uniform init would shrink them to about 0.58 of it) and the PE ratio set by
    `input_scale` holds at initialisation whether or not the sizes agree.
    """
    if d_in == d_model:
        return nn.Identity()
    projection = nn.Linear(d_in, d_model)
    nn.init.normal_(projection.weight, std=d_in ** -0.5)
    nn.init.zeros_(projection.bias)
    return projection


def input_scale(inputs: str, d_model: int) -> float:
    """The factor on the projected windows before the PE is added: components of order 1, as the PE's.

    Vaswani et al. (section 3.4) multiply embeddings by sqrt(d_model); their embeddings start with
    components of size 1/sqrt(d_model), so the product has components of order 1, comparable to the
    sines of the PE (RMS 1/sqrt(2)). MATER's windows are l2-normalised (section 3.1): the same
    sqrt(d_model) brings them to that scale. Standardised windows
    (`mer_lib.models.standardized.Standardized`, z-scored per dimension) already have components of
    order 1, and multiplying them by sqrt(d_model) would make the signal 11 (d = 128) to 23 (d = 512)
    times the PE and the PE ablation a no-op.
    """
    return math.sqrt(d_model) if inputs == "l2" else 1.0


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of h (B, T, d) over the windows where mask (B, T) is True (eq. 2); zeros for an empty clip."""
    weights = mask.to(h.dtype).unsqueeze(-1)
    return (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to each window independently."""

    def __init__(self, config: MaterConfig):
        super().__init__()
        self.w_1 = nn.Linear(config.d_model, config.d_ff)
        self.w_2 = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(F.relu(self.w_1(x))))


class EncoderLayer(nn.Module):
    """x = LayerNorm(x + MHSA(x)); x = LayerNorm(x + FFN(x)); without MHSA only the second step."""

    def __init__(self, config: MaterConfig):
        super().__init__()
        d = config.d_model
        self.attn = MultiHeadSelfAttention(d, d, config.heads, bias=True) if config.mhsa else None
        self.ln_attn = nn.LayerNorm(config.d_model) if config.mhsa else None
        self.ff = PositionwiseFeedForward(config)
        self.ln_ff = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        weights = None
        if self.attn is not None:
            attended, weights = self.attn(x, mask)
            x = self.ln_attn(x + self.dropout(attended))
        x = self.ln_ff(x + self.dropout(self.ff(x)))
        return x, weights


class ModalityEncoder(nn.Module):
    """One modality's sub-network f^m: projection, PE, N encoder layers, mean pooling, FC head.

    The projected windows are scaled by `input_scale` so that their components and the PE's are of
    the same order, as in Vaswani et al.: l2-normalised windows by sqrt(d_model) (unscaled, the PE
    would outweigh them sixteen to one at d = 512), standardised ones not at all. The conv front-end
    ends in a LayerNorm, which already gives components of order 1.
    """

    def __init__(self, config: MaterConfig, d_in: int, frontend: str = "linear"):
        super().__init__()
        self.pe, self.scale = config.pe, input_scale(config.inputs, config.d_model)
        self.frontend = ConvFrontEnd(d_in, config.d_model, dropout=config.dropout) if frontend == "conv" else None
        self.proj = input_projection(d_in, config.d_model) if self.frontend is None else None
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.head = nn.Linear(config.d_model, config.n_classes)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(logits (B, C), per-layer outputs, per-layer attention weights) for windows x (B, T, d_in)."""
        h = self.proj(x) * self.scale if self.frontend is None else self.frontend(x, mask)
        if self.pe:
            h = h + sinusoidal_encoding(h.shape[1], h.shape[2]).to(h.device, h.dtype)
        h = self.dropout(h)
        hidden, attention = [], []
        for layer in self.layers:
            h, weights = layer(h, mask)
            hidden.append(h)
            if weights is not None:
                attention.append(weights)
        return self.head(masked_mean(h, mask)), hidden, attention


class LateFusion(nn.Module):
    """Decision-level fusion of modality branches: predictions = mean over modalities of W^m h^m + b^m.

    Each branch maps (windows (B, T, d), mask (B, T)) to (logits, hidden, attention). The fused
    logits average the branches of the modalities each clip has (at least one valid window), which
    is eq. 3 whenever both are present. Shared by MATER and the LSTM baseline.
    """

    def __init__(self, branches: dict[str, nn.Module]):
        super().__init__()
        self.branches = nn.ModuleDict(branches)

    def forward(self, audio: Tensor | None = None, video: Tensor | None = None,
                audio_mask: Tensor | None = None, video_mask: Tensor | None = None,
                return_internals: bool = False) -> ModelOutput:
        """Windows (B, T, d_m) and masks (B, T; default all present) of the modalities the model uses;
        `return_internals` fills the output's per-layer `hidden` states and `attention` weights."""
        inputs = {"a": (audio, audio_mask), "v": (video, video_mask)}
        logits, hidden, attention, present = {}, {}, {}, {}
        for m, branch in self.branches.items():
            x, mask = inputs[m]
            if x is None:
                raise MerError(f"this model needs {MODALITY_NAMES[m]} windows (it was built for "
                               f"modalities {''.join(self.branches)})")
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
            logits[m], hidden[m], attention[m] = branch(x, mask)
            present[m] = mask.any(1, keepdim=True).to(logits[m].dtype)
        fused = sum(logits[m] * present[m] for m in logits) / sum(present.values()).clamp(min=1.0)
        if not return_internals:
            hidden, attention = {}, {}
        return ModelOutput(fused, logits, hidden=hidden, attention=attention)


class Mater(LateFusion):
    """MATER: a Transformer encoder per modality, mean pooling, FC heads, logit-mean fusion."""

    def __init__(self, config: MaterConfig):
        dims = {"a": config.d_audio, "v": config.d_video}
        frontends = {"a": config.frontend, "v": "linear"}
        super().__init__({m: ModalityEncoder(config, dims[m], frontends[m]) for m in config.modalities})
        self.config = config
