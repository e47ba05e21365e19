"""Frozen-backbone feature cache for the cross-modal attention model: CNN outputs computed once, stored.

The model of Mocanu et al. (2023) cannot train end to end on a CPU at the paper's resolution (a 3D
ResNet-101 on 6 x 16 faces of 224 x 224 per clip). Its CPU path keeps the backbones frozen: their
outputs are extracted once into the embedding store, and only the attention (VS, VC, VT, AT), the
fusion and the loss are trained on top (``CrossAttentionModel.forward`` on the stored sequences).

Per usable clip of a prepared data folder:
- video: the face is tracked and aligned in every frame (`FaceTracker`, chips of `frame_size`
  pixels, 112 by default: torchvision's Kinetics-400 crop size); N = 6 snippets of k = 16 face
  frames are sampled uniformly over the frames with a face (`snippet_indices`), scaled to [0, 1]
  and normalised with the Kinetics-400 mean and std of the backbone's torchvision weights; a
  Kinetics-400 video ResNet (`VideoTrunk`) gives each snippet's conv5 maps (m, h, w), time
  averaged. Stored flattened, X (clips, 6, m h w), with meta "map_shape" [m, h, w] and "frame_size".
- audio: the clip at 16 kHz (the spectrogram's 256 bins then span 0-8 kHz) -> the 6 one-second log
  spectrogram segments of section 4.2 (`spectrogram_segments`), standardised to zero mean and unit
  variance over the clip (the paper normalises each batch; a frozen extractor's batch is one clip),
  resized to `spectrogram_size` -> an ImageNet ResNet-18 with a 1-channel first layer (`AudioTrunk`),
  pooled conv5: X (clips, 6, 512).

Store names follow mer_lib.features.store: ``video-r3d_18_maps112-w1xT6`` and
``audio-resnet18_spectrogram-w1xT6``. The frame size is part of the video extractor's name because it
sets the maps' size d = m h w. The window is 1 s: the audio segments last exactly one second
(section 4.2), and the video snippets are their visual counterparts at the same N positions. Unlike
the consecutive windows of `mer extract`, the N snippets are spread over the whole clip, so T x w is
not the time covered; every snippet is present (mask all True).

Stores are built by the cached per-clip loop of `mer extract` (mer_lib.features.extract.build_store),
with `embed_clip` as the per-clip function: work is parallel over clips, each clip's result (or a
``.fail.json`` with the reason) goes to ``embeddings/.partial/<store>-<settings>/`` at once, keyed by
its media files' identity, the store is assembled when all clips are done, and failed clips are listed
in its provenance (and retried by the next run). The backbones and
their inputs (snippets, spectrogram segments) are in mer_lib.features.trunks. Pretrained weights come
from mer_lib.weights (``mer weights fetch r3d_18_kinetics400`` / ``resnet18_imagenet``, or
``MER_WEIGHTS_<NAME>=/path``); missing weights are an error before any clip is touched, never random
weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights
from torchvision.models.video import MC3_18_Weights, R2Plus1D_18_Weights, R3D_18_Weights

from mer_lib import media, parallel, weights
from mer_lib.errors import EmptyInput, MerError, check_number
from mer_lib.features import store
from mer_lib.features.extract import build_store
from mer_lib.features.trunks import (
    FRAMES_PER_SNIPPET,
    N_SNIPPETS,
    SEGMENT_SECONDS,
    VIDEO_BACKBONES,
    AudioTrunk,
    VideoTrunk,
    snippet_indices,
    spectrogram_segments,
    video_map_side,
)

SAMPLE_RATE = 16000  # Hz: a 32 ms Hamming window then has 257 bins, the 256 lowest are kept
# backbone -> (mer_lib.weights name of its pretrained weights, torchvision's description of them)
PRETRAINED = {"video": {"r3d_18": ("r3d_18_kinetics400", R3D_18_Weights.KINETICS400_V1),
                        "r2plus1d_18": ("r2plus1d_18_kinetics400", R2Plus1D_18_Weights.KINETICS400_V1),
                        "mc3_18": ("mc3_18_kinetics400", MC3_18_Weights.KINETICS400_V1)},
              "audio": {"resnet18": ("resnet18_imagenet", ResNet18_Weights.IMAGENET1K_V1)}}


@dataclass(frozen=True)
class BackboneConfig:
    """What one store of frozen-backbone outputs is made of; its hash guards an interrupted run's partials.

    size: side of the face frames (video) or of the spectrogram images (audio).
    """

    modality: str
    backbone: str
    weights: str  # mer_lib.weights name
    weights_sha256: str
    size: int
    window: float = SEGMENT_SECONDS
    count: int = N_SNIPPETS

    @property
    def extractor(self) -> str:
        """``r3d_18_maps112`` (the frame size sets the maps' size) or ``resnet18_spectrogram``."""
        return f"{self.backbone}_maps{self.size}" if self.modality == "video" else f"{self.backbone}_spectrogram"

    @property
    def name(self) -> str:
        return store.store_name(self.modality, self.extractor, self.window, self.count)


def backbone_config(modality: str, backbone: str, size: int, weights_name: str | None = None) -> BackboneConfig:
    """The checked config of one store; MerError for an unknown backbone, a bad size or missing weights."""
    table = PRETRAINED[modality]
    if backbone not in table:
        known = ", ".join(table) + (" (r3d_101 has no registered Kinetics weights)" if modality == "video" else "")
        raise MerError(f"unknown {modality} backbone {backbone!r} for cached features (choose from {known})")
    check_number("frame_size" if modality == "video" else "spectrogram_size", size, integer=True, low=1)
    name = weights_name or table[backbone][0]
    return BackboneConfig(modality, backbone, name, weights.sha256_file(weights.resolve(name)), size)


# ----------------------------------------------------------------------------- per clip

_TRUNKS: dict[BackboneConfig, nn.Module] = {}  # per process: built once, reused for every clip


def trunk(config: BackboneConfig) -> nn.Module:
    """The frozen backbone of `config` with its pretrained weights, in evaluation mode."""
    if config not in _TRUNKS:
        net = (VideoTrunk(config.backbone, config.weights) if config.modality == "video"
               else AudioTrunk((config.size, config.size), config.weights))
        _TRUNKS[config] = net.eval().requires_grad_(False)
    return _TRUNKS[config]


def face_snippets(chips: np.ndarray, backbone: str) -> Tensor:
    """Aligned face chips (n, S, S, 3) uint8 -> N snippets of k frames (N, 3, k, S, S), Kinetics-normalised."""
    preset = PRETRAINED["video"][backbone][1].transforms()
    mean, std = (torch.tensor(v).view(3, 1, 1, 1) for v in (preset.mean, preset.std))
    x = torch.from_numpy(chips[snippet_indices(len(chips))]).permute(0, 4, 1, 2, 3).float() / 255
    return (x - mean) / std


def spectrogram_images(signal: np.ndarray) -> Tensor:
    """The N one-second spectrogram segments of a 16 kHz clip (N, 1, 256, 100), standardised over the clip."""
    segments = spectrogram_segments(torch.from_numpy(signal), SAMPLE_RATE)
    return (segments - segments.mean()) / segments.std().clamp(min=1e-6)


def video_maps(clip: dict, config: BackboneConfig) -> np.ndarray:
    """The conv5 maps of the clip's N face snippets, flattened: (N, m h w)."""
    from mer_lib.features.faces import FaceTracker  # dlib: loaded only where faces are tracked

    media.probe(clip["video_path"])  # a file cut short since `mer data prepare` fails here, as there
    frames, _ = media.read_video(clip["video_path"])
    track = FaceTracker(chip_size=config.size).track(frames)
    if not track.found.any():
        raise EmptyInput("no face found in any frame")
    with torch.inference_mode():
        maps = trunk(config)(face_snippets(track.chips[track.found], config.backbone))
    return maps.flatten(1).numpy()


def audio_features(clip: dict, config: BackboneConfig) -> np.ndarray:
    """The pooled conv5 features of the clip's N spectrogram segments: (N, 512)."""
    media.probe(clip["audio_path"])
    signal, _ = media.read_audio(clip["audio_path"], sample_rate=SAMPLE_RATE)
    with torch.inference_mode():
        return trunk(config)(spectrogram_images(signal)).numpy()


def embed_clip(clip: dict, config: BackboneConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """The clip's store rows (N, d) (`video_maps` or `audio_features`), all present, and no notes."""
    X = video_maps(clip, config) if config.modality == "video" else audio_features(clip, config)
    return X, np.ones(len(X), bool), {}


# ----------------------------------------------------------------------------- stores

def _provenance(config: BackboneConfig, clips: list[dict], mask: np.ndarray) -> tuple[dict, str]:
    """The provenance keys that say how to read X (map shape and frame size, or spectrogram settings), a note."""
    if config.modality == "video":
        m, side = VIDEO_BACKBONES[config.backbone], video_map_side(config.size)
        return ({"extractor": config.extractor, "frame_size": config.size, "map_shape": [m, side, side],
                 "frames_per_snippet": FRAMES_PER_SNIPPET, "snippets": "spread uniformly over the frames with a face"},
                f"a row holds the {m}x{side}x{side} conv5 maps of a snippet")
    return ({"extractor": config.extractor, "spectrogram_size": config.size, "sample_rate": SAMPLE_RATE,
             "segment_seconds": SEGMENT_SECONDS, "snippets": "1 s segments, starts spread uniformly over the clip"},
            "a row holds the pooled conv5 features of a 1 s segment")


def extract_backbone(data_dir: str | Path, video_backbone: str | None = "r3d_18", frame_size: int = 112,
                     audio_backbone: str | None = "resnet18", video_weights: str | None = None,
                     audio_weights: str | None = None, spectrogram_size: int = 224,
                     workers: int | None = None) -> dict[str, Path | None]:
    """Build the cached video maps and/or audio features of a prepared data folder (None skips a modality).

    `video_weights` / `audio_weights` name mer_lib.weights entries (default: the backbone's Kinetics-400
    or ImageNet weights). Every backbone is built with its weights before any clip is touched: missing
    weights or weights that do not fit are one error, not one failure per clip.
    """
    if video_backbone is None and audio_backbone is None:
        raise MerError("nothing to extract: give a video and/or an audio backbone")
    parallel.check_workers(workers)
    plans = [("video", video_backbone, frame_size, video_weights),
             ("audio", audio_backbone, spectrogram_size, audio_weights)]
    configs = [backbone_config(*plan) for plan in plans if plan[1] is not None]
    for config in configs:
        trunk(config)
    return {config.modality: build_store(data_dir, config, embed_clip, _provenance, workers) for config in configs}


def map_settings(meta: dict) -> dict:
    """CrossAttentionConfig settings for a store's provenance: d_video = m and frame_size for cached maps.

    {} for stores of window embeddings. The training loop builds the model with these overriding the
    store's flat dimension (m h w), so `CrossAttentionModel.forward` unflattens the maps for VS and VC.
    """
    if "map_shape" not in meta:
        return {}
    m, h, w = meta["map_shape"]
    side = video_map_side(meta["frame_size"])
    if (h, w) != (side, side) or meta.get("dim", m * h * w) != m * h * w:
        raise MerError(f"store {meta.get('name', '?')}: maps of {m}x{h}x{w} do not fit frame size "
                       f"{meta['frame_size']} and dimension {meta.get('dim')}: extract it again")
    return {"d_video": m, "frame_size": meta["frame_size"]}
