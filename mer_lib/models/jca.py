"""Joint cross-attention audio-visual fusion (Praveen, Cardinal and Granger 2023).

Over a clip's L time windows, with audio features X_a (d_a x L), visual features X_v (d_v x L) and
their joint representation J = [X_a; X_v] (d = d_a + d_v), each modality is attended according to
its correlation with the *joint* features, which carries both the intra- and the inter-modal
relationships:

    C_a = tanh(X_a^T W_ja J / sqrt(d)),   C_v = tanh(X_v^T W_jv J / sqrt(d))      (L x L)
    H_a = ReLU(W_a X_a + W_ca C_a^T),     H_v = ReLU(W_v X_v + W_cv C_v^T)         (k x L)
    X_att,a = W_ha H_a + X_a,             X_att,v = W_hv H_v + X_v                 (d_a x L, d_v x L)

Both attended streams are concatenated, [X_att,a; X_att,v] (d x L), and go to the heads. Two heads:
emotion classes from the masked mean over the windows (the categorical datasets of this course), and
per-window valence and arousal in [-1, 1] through tanh (the paper's dimensional task, trained with
mer_lib.models.losses.ccc_loss).

Two readings. The equations above (as the paper states them; the copy under ../shared/papers is the
abstract only) and the authors' public code (github.com/praveena2j/Joint-Cross-Attention-for-Audio-
Visual-Fusion, models/cam.py) differ in two places:
- The axis of the joint correlation matrix. In the equations C_a = tanh(X_a^T W_ja J / sqrt(d)) is
  L x L: window against window, W_ja is d_a x d, and W_a (k x d_a), W_ca (k x L), W_ha (d_a x k)
  make H_a k x L. In the code the learned matrix acts on the time axis and C_a = tanh(X_a W_ja J^T /
  sqrt(d)) is d_a x d: feature against feature, W_ja is L x L, and H_a = ReLU(X_a W_a + C_a W_ca) is
  d_a x k with W_a (L x k), W_ca (d x k); X_att,a = H_a W_ha + X_a with W_ha (k x L).
- The heads' input. The equations concatenate both attended streams; that code concatenates the raw
  visual features with the attended visual ones, [X_v; X_att,v] (2 d_v), so the attended audio
  stream never reaches the output. (A second repository of the authors, JointCrossAttentional-AV-Fusion,
  concatenates both attended streams, but sizes its regressor for the other input.)
This module follows the equations by default (``correlation="time"``, ``fused="attended"``): they are
this course's specification, they are the reading the abstract describes (cross-attention weights
from the correlation of the joint representation with each modality, i.e. which windows to attend
to), and the code is not consistent across its own two versions. ``correlation="features"`` and
``fused="visual"`` give the code's reading; tests/test_jca_losses.py checks the shapes of both.

Either way the model is built for a fixed number of windows L (W_ca, or W_ja, W_a and W_ha, act on
the L windows). Rows are batch-first here, so X_a^T is the (B, L, d_a) tensor itself. Padded windows
(mask False) are zeroed on entry: with no biases in the attention maps, in the time reading their
correlations, H columns and attended features are zero; in both readings the heads ignore them, so
their values never reach the output. k (the attention width) is not given in the abstract; 128 is
this course's choice. (The code also projects each stream to 128 dimensions before the attention;
not done here.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError
from mer_lib.models.mater import masked_mean
from mer_lib.models.outputs import ModelOutput

CORRELATIONS = ("time", "features")
FUSED = ("attended", "visual")


@dataclass
class JcaConfig:
    """Architecture of the joint cross-attention model."""

    n_classes: int = 8
    n_windows: int = 10  # L: the number of time windows per clip
    d_audio: int = 512  # d_a
    d_video: int = 512  # d_v
    d_attention: int = 128  # k: rows of H_a and H_v
    d_model: int = 256  # model width: the hidden layer of both heads (the classification one is the embedding)
    dropout: float = 0.1
    correlation: str = "time"  # C spans "time" (L x L, the equations) or "features" (d_a x d, the public code)
    fused: str = "attended"  # the heads see "attended" [X_att,a; X_att,v] (equations) or "visual" [X_v; X_att,v] (code)

    def __post_init__(self):
        if min(self.n_classes, self.n_windows, self.d_audio, self.d_video, self.d_attention, self.d_model) < 1:
            raise MerError(f"JCA sizes must be positive: {self}")
        for name, value, choices in (("correlation", self.correlation, CORRELATIONS), ("fused", self.fused, FUSED)):
            if value not in choices:
                raise MerError(f"unknown JCA {name} {value!r} (choose {' or '.join(choices)})")

    @property
    def d_fused(self) -> int:
        """The size of each window's features at the heads."""
        return self.d_audio + self.d_video if self.fused == "attended" else 2 * self.d_video


class JointCrossAttention(nn.Module):
    """One modality's branch. Time reading: C = tanh(X^T W_j J / sqrt(d)) (L x L), H = ReLU(W X + W_c C^T),
    X_att = W_h H + X. Feature reading: C = tanh(X W_j J^T / sqrt(d)) (d_in x d), H = ReLU(X W + C W_c),
    X_att = H W_h + X. (The Linear layers hold the transposes of the weights named in the comments.)"""

    def __init__(self, d_in: int, d_joint: int, n_windows: int, d_attention: int, correlation: str = "time"):
        super().__init__()
        self.correlation = correlation
        self.scale = math.sqrt(d_joint)
        if correlation == "time":  # C is L x L: W_j is d_in x d; W and W_h act on features, W_c on windows
            w_j, across, correlated = (d_in, d_joint), d_in, n_windows
        else:  # C is d_in x d: W_j is L x L; W and W_h act on windows, W_c on the joint features
            w_j, across, correlated = (n_windows, n_windows), n_windows, d_joint
        self.W_j = nn.Parameter(torch.empty(*w_j))  # W_ja / W_jv
        nn.init.xavier_uniform_(self.W_j)
        self.W = nn.Linear(across, d_attention, bias=False)  # W_a / W_v
        self.W_c = nn.Linear(correlated, d_attention, bias=False)  # W_ca / W_cv
        self.W_h = nn.Linear(d_attention, across, bias=False)  # W_ha / W_hv

    def forward(self, x: Tensor, joint: Tensor) -> tuple[Tensor, Tensor]:
        """x = X^T (B, L, d_in), joint = J^T (B, L, d) -> (X_att^T (B, L, d_in), C: (B, L, L) or (B, d_in, d))."""
        if self.correlation == "time":
            c = torch.tanh(x @ self.W_j @ joint.transpose(1, 2) / self.scale)  # C (L x L)
            h = F.relu(self.W(x) + self.W_c(c))  # H^T = (W X + W_c C^T)^T = X^T W^T + C W_c^T
            return self.W_h(h) + x, c  # X_att^T
        features = x.transpose(1, 2)  # X (d_in x L)
        c = torch.tanh(features @ self.W_j @ joint / self.scale)  # C (d_in x d)
        h = F.relu(self.W(features) + self.W_c(c))  # H (d_in x k)
        return (self.W_h(h) + features).transpose(1, 2), c  # X_att^T


class JointCrossAttentionModel(nn.Module):
    """JCA fusion of audio and visual window features, a categorical and a dimensional head."""

    def __init__(self, config: JcaConfig):
        super().__init__()
        self.config = config
        d, reading = config.d_audio + config.d_video, (config.n_windows, config.d_attention, config.correlation)
        self.audio = JointCrossAttention(config.d_audio, d, *reading)
        self.video = JointCrossAttention(config.d_video, d, *reading)
        self.embed = nn.Linear(config.d_fused, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, config.n_classes)
        self.valence_arousal = nn.Sequential(nn.Linear(config.d_fused, config.d_model), nn.ReLU(),
                                             nn.Dropout(config.dropout), nn.Linear(config.d_model, 2), nn.Tanh())

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
                video_mask: Tensor | None = None, return_internals: bool = False) -> ModelOutput:
        """audio (B, L, d_a), video (B, L, d_v), masks (B, L) True = present. The output's ``valence_arousal``
        (B, L, 2) is zero at windows neither modality has; `return_internals` fills ``attention`` with C_a and
        C_v and ``hidden`` with X_att,a, X_att,v (B, L, d_a / d_v) and the heads' input "features"
        (B, L, JcaConfig.d_fused): [X_att,a; X_att,v] (or [X_v; X_att,v])."""
        x_a, audio_mask = self._stream(audio, audio_mask, "a", self.config.d_audio)
        x_v, video_mask = self._stream(video, video_mask, "v", self.config.d_video)
        joint = torch.cat([x_a, x_v], dim=-1)  # J = [X_a; X_v]
        x_att_a, c_a = self.audio(x_a, joint)
        x_att_v, c_v = self.video(x_v, joint)
        first = x_att_a if self.config.fused == "attended" else x_v
        features = torch.cat([first, x_att_v], dim=-1)  # [X_att,a; X_att,v], or the code's [X_v; X_att,v]
        present = audio_mask | video_mask
        embedding = self.embed(masked_mean(features, present))
        logits = self.classifier(self.dropout(F.relu(embedding)))
        valence_arousal = self.valence_arousal(features).masked_fill(~present[..., None], 0.0)
        output = ModelOutput(logits, embedding=embedding, valence_arousal=valence_arousal)
        if return_internals:
            output.hidden = {"X_att_a": x_att_a, "X_att_v": x_att_v, "features": features}
            output.attention = {"C_a": c_a, "C_v": c_v}
        return output
