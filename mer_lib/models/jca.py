"""Joint cross-attention audio-visual fusion (Praveen, Cardinal and Granger 2023).

Over a clip's L time windows, with audio features X_a (d_a x L), visual features X_v (d_v x L) and
their joint representation J = [X_a; X_v] (d = d_a + d_v), each modality is attended according to
its correlation with the *joint* features, which carries both the intra- and the inter-modal
relationships:

    C_a = tanh(X_a^T W_ja J / sqrt(d)),   C_v = tanh(X_v^T W_jv J / sqrt(d))      (L x L)
    H_a = ReLU(W_a X_a + W_ca C_a^T),     H_v = ReLU(W_v X_v + W_cv C_v^T)         (k x L)
    X_att,a = W_ha H_a + X_a,             X_att,v = W_hv H_v + X_v                 (d_a x L, d_v x L)

Both attended streams are concatenated, [X_att,a; X_att,v] (d x L), and go to the heads. (A public
implementation concatenated the raw visual features instead of X_att,v; tests/test_jca_losses.py
checks that both attended streams reach the output.) Two heads: emotion classes from the masked
mean over the windows (the categorical datasets of this course), and per-window valence and arousal
in [-1, 1] through tanh (the paper's dimensional task, trained with mer_lib.models.losses.ccc_loss).

W_ca and W_cv act on the L columns of the correlation matrices, so a model is built for a fixed
number of windows L. Rows are batch-first here, so X_a^T is the (B, L, d_a) tensor itself. Padded
windows (mask False) are zeroed on entry; with no biases in the attention maps, their correlations,
H columns and attended features are zero, and the heads ignore them, so their values never reach
the output. k (the attention width) is not given in the abstract; 128 is this course's choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mer_lib.errors import MerError
from mer_lib.models.cross_attention import FusionOutput
from mer_lib.models.mater import MODALITY_NAMES, masked_mean


@dataclass
class JcaConfig:
    """Architecture of the joint cross-attention model."""

    n_classes: int = 8
    n_windows: int = 10  # L: the number of time windows per clip
    d_audio: int = 512  # d_a
    d_video: int = 512  # d_v
    d_attention: int = 128  # k: rows of H_a and H_v
    d_hidden: int = 256  # hidden layer of both heads; the classification one is the embedding
    dropout: float = 0.1

    def __post_init__(self):
        if min(self.n_classes, self.n_windows, self.d_audio, self.d_video, self.d_attention, self.d_hidden) < 1:
            raise MerError(f"JCA sizes must be positive: {self}")


@dataclass
class JcaOutput(FusionOutput):
    """FusionOutput plus ``valence_arousal`` (B, L, 2) in [-1, 1] (zero at padded windows) and
    ``features`` (B, L, d_a + d_v), the concatenated attended streams [X_att,a; X_att,v]."""

    valence_arousal: Tensor | None = None
    features: Tensor | None = None


class JointCrossAttention(nn.Module):
    """One modality's branch: C = tanh(X^T W_j J / sqrt(d)), H = ReLU(W X + W_c C^T), X_att = W_h H + X."""

    def __init__(self, d_in: int, d_joint: int, n_windows: int, d_attention: int):
        super().__init__()
        self.scale = math.sqrt(d_joint)
        self.W_j = nn.Parameter(torch.empty(d_in, d_joint))  # W_ja / W_jv
        nn.init.xavier_uniform_(self.W_j)
        self.W = nn.Linear(d_in, d_attention, bias=False)  # W_a / W_v
        self.W_c = nn.Linear(n_windows, d_attention, bias=False)  # W_ca / W_cv
        self.W_h = nn.Linear(d_attention, d_in, bias=False)  # W_ha / W_hv

    def forward(self, x: Tensor, joint: Tensor) -> tuple[Tensor, Tensor]:
        """x = X^T (B, L, d_in), joint = J^T (B, L, d) -> (X_att^T (B, L, d_in), C (B, L, L))."""
        c = torch.tanh(x @ self.W_j @ joint.transpose(1, 2) / self.scale)  # C (L x L)
        h = F.relu(self.W(x) + self.W_c(c))  # H^T = (W X + W_c C^T)^T = X^T W^T + C W_c^T
        return self.W_h(h) + x, c  # X_att^T


class JointCrossAttentionModel(nn.Module):
    """JCA fusion of audio and visual window features, a categorical and a dimensional head."""

    def __init__(self, config: JcaConfig):
        super().__init__()
        self.config = config
        d = config.d_audio + config.d_video
        self.audio = JointCrossAttention(config.d_audio, d, config.n_windows, config.d_attention)
        self.video = JointCrossAttention(config.d_video, d, config.n_windows, config.d_attention)
        self.embed = nn.Linear(d, config.d_hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_hidden, config.n_classes)
        self.valence_arousal = nn.Sequential(nn.Linear(d, config.d_hidden), nn.ReLU(), nn.Dropout(config.dropout),
                                             nn.Linear(config.d_hidden, 2), nn.Tanh())

    def _stream(self, x: Tensor | None, mask: Tensor | None, modality: str, size: int) -> tuple[Tensor, Tensor]:
        """Checked windows (B, L, size), padded ones zeroed, and their mask (all present by default)."""
        name = MODALITY_NAMES[modality]
        if x is None:
            raise MerError(f"joint cross-attention needs both audio and video windows ({name} is missing)")
        if x.ndim != 3 or x.shape[1:] != (self.config.n_windows, size):
            raise MerError(f"{name} windows must be (batch, {self.config.n_windows}, {size}) for this model, "
                           f"got {tuple(x.shape)}")
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        return x.masked_fill(~mask[..., None], 0.0), mask

    def forward(self, audio: Tensor | None = None, video: Tensor | None = None, audio_mask: Tensor | None = None,
                video_mask: Tensor | None = None, return_attention: bool = False) -> JcaOutput:
        """audio (B, L, d_a), video (B, L, d_v), masks (B, L) True = present."""
        x_a, audio_mask = self._stream(audio, audio_mask, "a", self.config.d_audio)
        x_v, video_mask = self._stream(video, video_mask, "v", self.config.d_video)
        joint = torch.cat([x_a, x_v], dim=-1)  # J = [X_a; X_v]
        x_att_a, c_a = self.audio(x_a, joint)
        x_att_v, c_v = self.video(x_v, joint)
        features = torch.cat([x_att_a, x_att_v], dim=-1)  # [X_att,a; X_att,v]
        present = audio_mask | video_mask
        embedding = self.embed(masked_mean(features, present))
        logits = self.classifier(self.dropout(F.relu(embedding)))
        valence_arousal = self.valence_arousal(features).masked_fill(~present[..., None], 0.0)
        attention = {"C_a": c_a, "C_v": c_v, "X_att_a": x_att_a, "X_att_v": x_att_v} if return_attention else {}
        return JcaOutput(logits, embedding, attention=attention, valence_arousal=valence_arousal, features=features)
