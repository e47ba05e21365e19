"""Cross-modal audio-video fusion with attention (Mocanu, Tapu and Zaharia 2023): the model.

Visual stream (section 3.1). A clip is cut into N = 6 snippets of k = 16 aligned face frames; a 3D
CNN (3D ResNet-101 in the paper) turns each snippet into its last convolutional feature maps
D_i^video (h x w x m, flattened to s x m with s = h w; the time axis the CNN leaves is averaged).
Three multi-head self-attention modules with H = 8 heads follow:
  VS, spatial (eqs. 1-3): the s positions attend to each other, D_i^VS = Concat(heads) W_0^VS;
  VC, channel-wise (eqs. 4-5): the m channels of (D_i^VS)^T attend to each other, giving D_i^VC;
  spatial average pooling -> D^VC = [d_v1 .. d_vN] (N x m);
  VT, temporal (eq. 6): the N snippets attend to each other, projected to m': D^VT (N x m').
Audio stream (section 3.2). A spectrogram (256 frequency bins, Hamming window 32 ms, hop 10 ms) is
cut into N segments of 1 s, each through a 2D ResNet-18 (last conv maps, spatial average pooling):
D^Audio (N x m'), then AT, the temporal attention of eq. 6: D^AT (N x m').
Cross-modal attention fusion (section 3.3, eqs. 7-11): Corr = D^AT W (D^VT)^T with a Xavier-initialised
W (m' x m'); W^Audio and W^Video are the column-wise softmax of Corr and Corr^T; the attended features
are added to their own stream and squashed, D^Corr-AT = tanh(D^AT + ~D^AT), D^Corr-VT likewise,
and [D^Corr-VT; D^Corr-AT] goes to the fully connected layers; the last one has one output per class.
Two readouts (mer_lib.models.losses says why): ``readout="centres"``, the paper's, trains the metric loss
on that last layer's output (the ``embedding``) and predicts the class of the nearest class centre;
``"softmax"`` predicts with its logits, and a metric loss added to the cross-entropy acts on the first
fully connected layer's output.

This module holds the attention modules (each a mer_lib.models.attention.MultiHeadSelfAttention,
MATER's too), the fusion and the model. The CNN backbones (`VideoTrunk`, `AudioTrunk`, `resnet3d_101`)
and their inputs (`snippet_indices`, `spectrogram_segments` and the section 4.2 constants) are in
mer_lib.features.trunks, shared with the frozen-backbone cache (mer_lib.features.backbone); they stay
importable from here.

Three entry points share every attention module:
- ``forward(audio, video, audio_mask, video_mask)``: sequences (B, T, d) from the embedding store,
  as the training loop passes them. Without ``frame_size``: per-window embeddings, as MATER takes
  them, through temporal attention + fusion only, so all models of the course meet on identical
  inputs. With ``frame_size``: video holds the cached conv5 maps of frozen backbones flattened per
  snippet, (B, N, m h w) (mer_lib.features.backbone), which first go through VS and VC like
  ``forward_features``. Masked windows never reach the output.
- ``forward_features(video_maps, audio_features)``: cached backbone outputs, (B, N, m, h, w) and
  (B, N, m'), for training the attention, fusion and loss on top of frozen CNNs (CPU-friendly).
- ``forward_frames(faces, spectrograms)``: end to end, (B, N, 3, k, H, W) face snippets and
  (B, N, 1, 256, 100) spectrogram segments (see `snippet_indices`, `spectrogram_segments`).
Each returns a mer_lib.models.outputs.ModelOutput; ``return_internals=True`` adds the attention maps of
the modules the model has and the streams D^AT, D^VT (and D^Corr-AT, D^Corr-VT after the fusion).

Reading notes, where the paper is loose:
- Eq. 8 writes ~D^AT = W^Audio D^AT; with Corr indexed (audio, video) and column-wise softmax, the
  attended audio for video segment j is sum_i W^Audio[i, j] d_ai, i.e. (W^Audio)^T D^AT (the form of
  Praveen et al.'s cross-attention, X_a A_a with features as columns). Eqs. 9-10 then add it to the
  stream position by position, which needs as many audio segments as video snippets (N = 6 both).
- Eq. 11's [;] is read as concatenation of features; the fused sequence is mean-pooled over the
  snippets before the fully connected layers (the paper does not say how the N rows enter them).
- Attention projections have no biases and no residual or normalisation around them (none in eqs.
  1-6). Each head has ceil(d/H) dimensions, d/H whenever H divides d (the channel module attends
  over s = h w features, and 14 x 14 = 196 is not a multiple of 8).
- Section 3.1 quotes 1024 channels and 16 x 16 maps for the 3D ResNet-101 conv5; that network has
  2048 channels, and torchvision's video stem (no max-pooling) leaves 14 x 14 at 224 x 224 input
  (16 x 16 at 256). The sizes here follow from the network actually built.
- Switches for Tables 1-3: ``at``, ``vs``, ``vc``, ``vt`` turn an attention module off (identity;
  temporal attention becomes a linear map to m'), ``fusion=False`` replaces eqs. 7-10 by plain
  concatenation, and ``modalities`` "a" or "v" keeps one stream (Table 1's AT and VS rows).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mer_lib.data.modalities import MODALITY_NAMES, check_modalities
from mer_lib.errors import MerError
from mer_lib.features.trunks import (  # noqa: F401 (re-exported)
    AUDIO_BACKBONES,
    FRAMES_PER_SNIPPET,
    FREQUENCY_BINS,
    HOP_SECONDS,
    N_SNIPPETS,
    SEGMENT_SECONDS,
    VIDEO_BACKBONES,
    WINDOW_SECONDS,
    AudioTrunk,
    VideoTrunk,
    resnet3d_101,
    snippet_indices,
    spectrogram,
    spectrogram_segments,
    video_map_side,
)
from mer_lib.models.attention import MultiHeadSelfAttention, masked_softmax
from mer_lib.models.mater import masked_mean
from mer_lib.models.outputs import ModelOutput

READOUTS = ("softmax", "centres")
FAR = 4.0  # squared distance between opposite unit vectors: where a class without training clips sits


@dataclass
class CrossAttentionConfig:
    """Architecture of the cross-modal attention model; defaults serve the window-embedding mode.

    `paper_config` gives the end-to-end model of the paper (3D ResNet-101, ResNet-18, 224 x 224).
    """

    n_classes: int = 8
    modalities: str = "av"  # "a", "v" or "av"
    d_audio: int = 512  # size of the audio descriptors entering AT (backbone channels or window embedding)
    d_video: int = 512  # m: size of the visual descriptors entering VS, VC and VT
    d_model: int = 512  # m': output of the temporal attention, size of each stream in the fusion
    heads: int = 8  # H
    d_embedding: int = 512  # first fully connected layer: the metric-learning embedding
    dropout: float = 0.1  # before the classification layer (not given in the paper)
    at: bool = True  # audio temporal attention
    vs: bool = True  # visual spatial attention (needs frame_size)
    vc: bool = True  # visual channel-wise attention (needs frame_size)
    vt: bool = True  # visual temporal attention
    fusion: bool = True  # cross-modal attention fusion (eqs. 7-10); False: plain concatenation
    readout: str = "softmax"  # "softmax": logits of the last layer; "centres": nearest class centre of its output
    frame_size: int | None = None  # side of the face frames; sets the h x w the VS/VC modules see
    video_backbone: str | None = None  # one of VIDEO_BACKBONES for the end-to-end mode
    audio_backbone: str | None = None  # one of AUDIO_BACKBONES for the end-to-end mode
    spectrogram_size: tuple[int, int] | None = (224, 224)  # spectrogram images are resized to this
    video_weights: str | None = None  # mer_lib.weights name of pretrained visual backbone weights
    audio_weights: str | None = None  # mer_lib.weights name of pretrained audio backbone weights

    def __post_init__(self):
        check_modalities(self.modalities)
        if self.readout not in READOUTS:
            raise MerError(f"unknown readout {self.readout!r} (choose {' or '.join(READOUTS)})")
        if self.video_backbone is not None and self.video_backbone not in VIDEO_BACKBONES:
            raise MerError(f"unknown video backbone {self.video_backbone!r} (choose {', '.join(VIDEO_BACKBONES)})")
        if self.audio_backbone is not None and self.audio_backbone not in AUDIO_BACKBONES:
            raise MerError(f"unknown audio backbone {self.audio_backbone!r} (choose {', '.join(AUDIO_BACKBONES)})")
        for name, backbone, table, size in (("d_video", self.video_backbone, VIDEO_BACKBONES, self.d_video),
                                            ("d_audio", self.audio_backbone, AUDIO_BACKBONES, self.d_audio)):
            if backbone is not None and table[backbone] != size:
                raise MerError(f"{backbone} gives {table[backbone]} channels: set {name}={table[backbone]}")
        if self.video_backbone is not None and self.frame_size is None:
            raise MerError("the end-to-end visual stream needs frame_size (the paper's is 224)")

    @property
    def map_positions(self) -> int | None:
        """s = h x w, the positions of the visual feature maps (None without frame_size)."""
        if self.frame_size is None:
            return None
        side = video_map_side(self.frame_size)
        return side * side


def paper_config(n_classes: int = 8, **overrides) -> CrossAttentionConfig:
    """The end-to-end model of section 4.2: 3D ResNet-101 on 224 x 224 faces, ResNet-18 on spectrograms."""
    settings = dict(n_classes=n_classes, d_video=VIDEO_BACKBONES["r3d_101"], d_audio=512, frame_size=224,
                    video_backbone="r3d_101", audio_backbone="resnet18")
    return CrossAttentionConfig(**(settings | overrides))


# ----------------------------------------------------------------------------- attention

class TemporalAttention(nn.Module):
    """VT / AT (eq. 6): multi-head self-attention over the N snippets, d -> m'; off: a linear map to m'."""

    def __init__(self, d_in: int, d_out: int, n_heads: int, enabled: bool):
        super().__init__()
        self.attention = MultiHeadSelfAttention(d_in, d_out, n_heads) if enabled else None
        self.projection = None if enabled or d_in == d_out else nn.Linear(d_in, d_out)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.attention is not None:
            return self.attention(x, mask)
        return (x if self.projection is None else self.projection(x)), None


class VisualSpatialChannel(nn.Module):
    """VS (eqs. 1-3) then VC (eqs. 4-5) on each snippet's maps, then spatial average pooling -> D^VC."""

    def __init__(self, config: CrossAttentionConfig):
        super().__init__()
        m, s, heads = config.d_video, config.map_positions, config.heads
        self.positions = s
        self.spatial = MultiHeadSelfAttention(m, m, heads) if config.vs else None  # W_0^VS: m x m
        self.channel = MultiHeadSelfAttention(s, s, heads) if config.vc else None  # W_0^VC: s x s

    def forward(self, maps: Tensor, attention: dict[str, Tensor]) -> Tensor:
        """maps (B, N, m, h, w) -> D^VC (B, N, m); VS/VC weights stored in `attention`."""
        b, n, m, h, w = maps.shape
        if h * w != self.positions:
            raise MerError(f"visual maps of {h}x{w} positions do not fit this model, built for {self.positions} "
                           f"(set frame_size to the size the maps were computed at)")
        d = maps.reshape(b * n, m, h * w).transpose(1, 2)  # D_i^video: (s, m) per snippet
        if self.spatial is not None:
            d, weights = self.spatial(d)  # D_i^VS (s, m)
            attention["VS"] = weights.view(b, n, *weights.shape[1:])  # (B, N, H, s, s)
        d = d.transpose(1, 2)  # (D_i^VS)^T: (m, s)
        if self.channel is not None:
            d, weights = self.channel(d)  # D_i^VC (m, s)
            attention["VC"] = weights.view(b, n, *weights.shape[1:])  # (B, N, H, m, m)
        return d.mean(2).reshape(b, n, m)  # spatial average pooling: [d_v1 .. d_vN]


class CrossModalFusion(nn.Module):
    """Eqs. 7-10: Corr = D^AT W (D^VT)^T; column-wise softmax; attended features; tanh skip connections."""

    def __init__(self, d_model: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_model, d_model))
        nn.init.xavier_uniform_(self.W)  # Xavier initialisation, section 4.2

    def forward(self, d_at: Tensor, d_vt: Tensor, audio_mask: Tensor,
                video_mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """D^AT (B, N, m'), D^VT (B, N, m') -> (D^Corr-AT, D^Corr-VT, W^Audio (B, N_a, N_v), W^Video (B, N_v, N_a)).

        W^Audio[:, i, j]: weight of audio segment i for video snippet j (each column sums to one over
        the valid audio segments); W^Video likewise with the roles swapped. A padded or missing
        window is neither attended to nor attends: its column is zero.
        """
        if d_at.shape[1] != d_vt.shape[1]:
            raise MerError(f"cross-modal fusion needs as many audio segments as video snippets "
                           f"({d_at.shape[1]} vs {d_vt.shape[1]})")
        corr = d_at @ self.W @ d_vt.transpose(1, 2)  # eq. 7, (B, N_a, N_v)
        pairs = audio_mask[:, :, None] & video_mask[:, None, :]
        w_audio = masked_softmax(corr, pairs, dim=1)  # column-wise softmax of Corr
        w_video = masked_softmax(corr.transpose(1, 2), pairs.transpose(1, 2), dim=1)  # ... of Corr^T
        attended_audio = w_audio.transpose(1, 2) @ d_at  # eq. 8, ~D^AT
        attended_video = w_video.transpose(1, 2) @ d_vt  # eq. 8, ~D^VT
        return torch.tanh(d_at + attended_audio), torch.tanh(d_vt + attended_video), w_audio, w_video  # eqs. 9-10


# ----------------------------------------------------------------------------- model

class CrossAttentionModel(nn.Module):
    """Audio and visual attention streams, cross-modal attention fusion, fully connected layers."""

    def __init__(self, config: CrossAttentionConfig):
        super().__init__()
        self.config = config
        streams = config.modalities
        self.video_trunk = (VideoTrunk(config.video_backbone, config.video_weights)
                            if "v" in streams and config.video_backbone else None)
        self.audio_trunk = (AudioTrunk(config.spectrogram_size, config.audio_weights)
                            if "a" in streams and config.audio_backbone else None)
        self.visual_spatial_channel = (VisualSpatialChannel(config)
                                       if "v" in streams and config.frame_size is not None else None)
        self.visual_temporal = (TemporalAttention(config.d_video, config.d_model, config.heads, config.vt)
                                if "v" in streams else None)
        self.audio_temporal = (TemporalAttention(config.d_audio, config.d_model, config.heads, config.at)
                               if "a" in streams else None)
        self.fusion = CrossModalFusion(config.d_model) if streams == "av" and config.fusion else None
        self.embed = nn.Linear(len(streams) * config.d_model, config.d_embedding)  # fully connected layers
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_embedding, config.n_classes)
        if config.readout == "centres":  # set from the training clips (set_class_centres); travel with checkpoints
            self.register_buffer("class_centres", torch.zeros(config.n_classes, config.n_classes))
            self.register_buffer("centre_fitted", torch.zeros(config.n_classes, dtype=torch.bool))

    @torch.no_grad()
    def set_class_centres(self, embedding: Tensor, labels: Tensor) -> None:
        """Each class's centre: the mean of its clips' l2-normalised last-layer outputs (`embedding`, (B, C))."""
        unit = F.normalize(embedding, dim=1)
        sums = torch.zeros_like(self.class_centres).index_add_(0, labels, unit)
        counts = torch.bincount(labels, minlength=self.config.n_classes).to(unit.dtype)
        self.class_centres.copy_(sums / counts.clamp(min=1)[:, None])
        self.centre_fitted.copy_(counts > 0)

    def nearest_centre_logits(self, embedding: Tensor) -> Tensor:
        """-||x - c_k||^2 for the l2-normalised output x and each class centre c_k (a monotone readout: the
        largest is the nearest centre; softmax of it gives the probabilities predictions.csv keeps)."""
        distances = (F.normalize(embedding, dim=1)[:, None, :] - self.class_centres).pow(2).sum(-1)
        return -distances.masked_fill(~self.centre_fitted, FAR)

    # --- entry points --------------------------------------------------------------------------
    def forward(self, audio: Tensor | None = None, video: Tensor | None = None, audio_mask: Tensor | None = None,
                video_mask: Tensor | None = None, return_internals: bool = False) -> ModelOutput:
        """Stored sequences: audio (B, T, d_audio), masks (B, T) True = present, and video (B, T, d_video).

        With `config.frame_size` set, video holds cached conv5 maps flattened per snippet, (B, N, m h w),
        which VS and VC attend to first (as in `forward_features`).
        """
        attention: dict[str, Tensor] = {}
        if video is not None and self.visual_spatial_channel is not None:
            video = self.visual_spatial_channel(self._unflattened_maps(video, video_mask), attention)
        return self._classify(audio, video, audio_mask, video_mask, attention, return_internals)

    def forward_features(self, video_maps: Tensor | None = None, audio_features: Tensor | None = None,
                         return_internals: bool = False) -> ModelOutput:
        """Frozen-backbone mode: video_maps (B, N, m, h, w) conv5 maps, audio_features (B, N, m') pooled conv5."""
        attention: dict[str, Tensor] = {}
        video = None
        if video_maps is not None:
            if self.visual_spatial_channel is None:
                raise MerError("this model takes no visual maps (set frame_size to the frame size the maps "
                               "were computed at, and modalities with v)")
            video = self.visual_spatial_channel(self._shape(video_maps, 5, "visual maps"), attention)
        return self._classify(audio_features, video, None, None, attention, return_internals)

    def forward_frames(self, faces: Tensor | None = None, spectrograms: Tensor | None = None,
                       return_internals: bool = False) -> ModelOutput:
        """End-to-end mode: faces (B, N, 3, k, H, W), spectrogram segments (B, N, 1, F, T)."""
        maps = audio = None
        if faces is not None:
            if self.video_trunk is None:
                raise MerError("this model has no visual backbone (set video_backbone and frame_size)")
            b, n = self._shape(faces, 6, "faces").shape[:2]
            maps = self.video_trunk(faces.flatten(0, 1))
            maps = maps.view(b, n, *maps.shape[1:])
        if spectrograms is not None:
            if self.audio_trunk is None:
                raise MerError("this model has no audio backbone (set audio_backbone)")
            b, n = self._shape(spectrograms, 5, "spectrogram segments").shape[:2]
            audio = self.audio_trunk(spectrograms.flatten(0, 1)).view(b, n, -1)
        return self.forward_features(maps, audio, return_internals)

    # --- shared path ---------------------------------------------------------------------------
    @staticmethod
    def _shape(x: Tensor, ndim: int, what: str) -> Tensor:
        if x.ndim != ndim:
            raise MerError(f"{what} must have {ndim} dimensions, got shape {tuple(x.shape)}")
        return x

    def _unflattened_maps(self, video: Tensor, mask: Tensor | None) -> Tensor:
        """Cached maps (B, N, m h w) -> (B, N, m, h, w), snippets masked out zeroed (so no NaN reaches VS/VC)."""
        m, side = self.config.d_video, video_map_side(self.config.frame_size)
        if video.ndim != 3 or video.shape[-1] != m * side * side:
            raise MerError(f"video maps must be (batch, snippets, {m}*{side}*{side} = {m * side * side}) for "
                           f"frame_size {self.config.frame_size}, got {tuple(video.shape)}")
        if mask is not None:
            video = video.masked_fill(~mask.bool()[..., None], 0.0)
        return video.reshape(*video.shape[:2], m, side, side)

    def _stream(self, x: Tensor | None, mask: Tensor | None, modality: str, size: int) -> tuple[Tensor, Tensor]:
        """Checked windows (padded ones zeroed) and their mask (all present by default)."""
        name = MODALITY_NAMES[modality]
        if x is None:
            raise MerError(f"this model needs {name} input (it was built for modalities {self.config.modalities})")
        if x.ndim != 3 or x.shape[-1] != size:
            raise MerError(f"{name} windows must be (batch, windows, {size}), got {tuple(x.shape)}")
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        return x.masked_fill(~mask[..., None], 0.0), mask

    def _classify(self, audio, video, audio_mask, video_mask, attention: dict[str, Tensor],
                  return_internals: bool) -> ModelOutput:
        """Temporal attention per stream, fusion, pooling over snippets, fully connected layers."""
        inputs = {"a": (audio, audio_mask, self.config.d_audio, self.audio_temporal, "AT"),
                  "v": (video, video_mask, self.config.d_video, self.visual_temporal, "VT")}
        streams, hidden = {}, {}
        for m in self.config.modalities:
            x, mask, size, temporal, key = inputs[m]
            x, mask = self._stream(x, mask, m, size)
            d, weights = temporal(x, mask)  # D^AT / D^VT (B, N, m')
            if weights is not None:
                attention[key] = weights
            streams[m], hidden[f"D_{key}"] = (d, mask), d
        if self.fusion is not None:
            (d_at, a_mask), (d_vt, v_mask) = streams["a"], streams["v"]
            d_corr_at, d_corr_vt, attention["W_audio"], attention["W_video"] = self.fusion(d_at, d_vt, a_mask, v_mask)
            streams = {"a": (d_corr_at, a_mask), "v": (d_corr_vt, v_mask)}
            hidden |= {"D_Corr_AT": d_corr_at, "D_Corr_VT": d_corr_vt}
        pooled = [masked_mean(*streams[m]) for m in ("v", "a") if m in streams]  # eq. 11: [VT; AT]
        embedding = self.embed(torch.cat(pooled, dim=-1))
        logits = self.classifier(self.dropout(F.relu(embedding)))
        if self.config.readout == "centres":  # the metric space is the last layer (Mocanu et al. section 4.3)
            embedding, logits = logits, self.nearest_centre_logits(logits)
        single = {self.config.modalities: logits} if len(self.config.modalities) == 1 else {}
        if not return_internals:
            hidden, attention = {}, {}
        return ModelOutput(logits, single, embedding, hidden=hidden, attention=attention)
