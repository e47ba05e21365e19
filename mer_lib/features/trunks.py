"""The CNN backbones of the cross-modal attention model (Mocanu et al. 2023) and their inputs.

Inputs (section 4.2): a clip gives N = 6 snippets of k = 16 face frames sampled uniformly over it
(`snippet_indices`) and N one-second segments of a log spectrogram with 256 frequency bins, a 32 ms
Hamming window and a 10 ms hop (`spectrogram`, `spectrogram_segments`).

Backbones, without their pooling and classifier: `VideoTrunk`, a torchvision video ResNet (r3d_18,
r2plus1d_18, mc3_18, or `resnet3d_101`, the paper's 3D ResNet-101) giving each snippet's last conv
maps (m, h, w) with h = w = `video_map_side(frame size)`; `AudioTrunk`, a 2D ResNet-18 with a
1-channel first layer giving each spectrogram segment's pooled conv5 features (m'). Pretrained
weights are loaded by their mer_lib.weights name.

Both the frozen-backbone cache (mer_lib.features.backbone) and the end-to-end model
(mer_lib.models.cross_attention) build on this module.
"""
from __future__ import annotations

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.video.resnet import BasicStem, Bottleneck, Conv3DSimple, VideoResNet

from mer_lib import weights as weights_mod
from mer_lib.errors import MerError

N_SNIPPETS = 6  # N, section 4.2
FRAMES_PER_SNIPPET = 16  # k
FREQUENCY_BINS = 256  # "FFT with 256 frequency components"
WINDOW_SECONDS, HOP_SECONDS, SEGMENT_SECONDS = 0.032, 0.010, 1.0

# Channels m of the last conv maps of each visual backbone; all share torchvision's video stem.
VIDEO_BACKBONES = {"r3d_18": 512, "r2plus1d_18": 512, "mc3_18": 512, "r3d_101": 2048}
AUDIO_BACKBONES = {"resnet18": 512}


# ----------------------------------------------------------------------------- inputs

def snippet_indices(n_frames: int, n_snippets: int = N_SNIPPETS,
                    frames_per_snippet: int = FRAMES_PER_SNIPPET) -> np.ndarray:
    """Frame indices (N, k) of N non-overlapping snippets of k frames sampled uniformly over the clip.

    Section 4.2: 96 keyframes per video, so consecutive keyframes are 0 to 2 frames apart on RAVDESS;
    a clip shorter than N k frames repeats frames.
    """
    if n_frames < 1:
        raise MerError("a clip with no frames has no snippets")
    picks = np.linspace(0, n_frames - 1, n_snippets * frames_per_snippet).round().astype(np.int64)
    return picks.reshape(n_snippets, frames_per_snippet)


def spectrogram(waveform: Tensor, sample_rate: int) -> Tensor:
    """Log-magnitude spectrogram (256, frames): Hamming window of 32 ms, hop of 10 ms (section 4.2).

    The FFT spans the 32 ms window and its 256 lowest frequency bins are kept (0-8 kHz at 16 kHz,
    where 256 is all of them but the Nyquist bin).
    """
    if waveform.ndim != 1:
        raise MerError(f"spectrogram expects a mono waveform (samples,), got shape {tuple(waveform.shape)}")
    win = round(WINDOW_SECONDS * sample_rate)
    if win // 2 + 1 < FREQUENCY_BINS:
        raise MerError(f"a 32 ms window at {sample_rate} Hz has fewer than {FREQUENCY_BINS} frequency bins: "
                       f"resample the audio to at least 16 kHz")
    stft = torch.stft(waveform.float(), n_fft=win, hop_length=round(HOP_SECONDS * sample_rate), win_length=win,
                      window=torch.hamming_window(win, device=waveform.device), center=True, return_complex=True)
    return torch.log(stft.abs()[:FREQUENCY_BINS] + 1e-6)


def spectrogram_segments(waveform: Tensor, sample_rate: int, n_segments: int = N_SNIPPETS) -> Tensor:
    """The spectrogram cut into N segments of 1 s, (N, 1, 256, 100), starts spread uniformly over the clip.

    Clips shorter than N seconds give overlapping segments, like the visual snippets cover the whole
    clip; clips shorter than 1 s are zero-padded first.
    """
    if waveform.ndim != 1 or n_segments < 1:
        raise MerError(f"spectrogram segments need a mono waveform (samples,) and at least one segment, "
                       f"got shape {tuple(waveform.shape)} and {n_segments} segments")
    length = round(SEGMENT_SECONDS * sample_rate)
    image = spectrogram(F.pad(waveform, (0, max(0, length - waveform.shape[0]))), sample_rate)
    frames = round(SEGMENT_SECONDS / HOP_SECONDS)
    starts = np.linspace(0, image.shape[1] - frames, n_segments).round().astype(np.int64)
    return torch.stack([image[:, s:s + frames] for s in starts])[:, None]


def video_map_side(frame_size: int) -> int:
    """Side of the last conv maps of torchvision's video ResNets: the stem and layers 2-4 halve it (ceil)."""
    side = frame_size
    for _ in range(4):
        side = (side + 1) // 2
    return side


# ----------------------------------------------------------------------------- backbones

def resnet3d_101() -> VideoResNet:
    """3D ResNet-101 (Hara et al. 2018, the paper's backbone): bottleneck blocks [3, 4, 23, 3] of 3x3x3 convs."""
    return VideoResNet(block=Bottleneck, conv_makers=[Conv3DSimple] * 4, layers=[3, 4, 23, 3], stem=BasicStem)


def _load_pretrained(network: nn.Module, name: str) -> None:
    """Load registered weights `name` (mer_lib.weights) into a backbone whose classifier was removed.

    The classifier ("fc.*") of the checkpoint is dropped; a 3-channel first conv is averaged over its
    input channels for the 1-channel spectrogram network.
    """
    state = {k: v for k, v in weights_mod.load_state_dict(name).items() if not k.startswith("fc.")}
    own = network.state_dict()
    for key, value in state.items():
        if key in own and value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            state[key] = value.mean(1, keepdim=True)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise MerError(f"weights '{name}' do not fit this backbone: {str(error).splitlines()[0]}") from None


class VideoTrunk(nn.Module):
    """A torchvision video ResNet without pooling and classifier: snippets -> last conv maps (m, h, w)."""

    def __init__(self, name: str, weights: str | None = None):
        super().__init__()
        builders = {"r3d_18": torchvision.models.video.r3d_18, "r2plus1d_18": torchvision.models.video.r2plus1d_18,
                    "mc3_18": torchvision.models.video.mc3_18}
        self.net = resnet3d_101() if name == "r3d_101" else builders[name](weights=None)
        del self.net.avgpool, self.net.fc
        if weights is not None:
            _load_pretrained(self.net, weights)

    def forward(self, x: Tensor) -> Tensor:
        """(n, 3, k, H, W) -> (n, m, h, w): conv5 output, its remaining time axis averaged."""
        net = self.net
        x = net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))
        return x.mean(2)


class AudioTrunk(nn.Module):
    """2D ResNet-18 on 1-channel spectrogram images, batch-normalised input (section 4.2), pooled conv5."""

    def __init__(self, size: tuple[int, int] | None, weights: str | None = None):
        super().__init__()
        self.size = size
        self.input_norm = nn.BatchNorm2d(1)  # "each batch ... normalized to zero mean and unit variance"
        self.net = torchvision.models.resnet18(weights=None)
        self.net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        del self.net.avgpool, self.net.fc
        if weights is not None:
            _load_pretrained(self.net, weights)

    def forward(self, x: Tensor) -> Tensor:
        """(n, 1, F, T) spectrogram segments -> (n, m'): conv5 maps after spatial average pooling."""
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(self.input_norm(x)))))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return x.mean((2, 3))
