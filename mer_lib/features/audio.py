"""Audio embeddings per time window: VGGish (the paper's), eGeMAPS / ComParE (openSMILE), log-mel stats.

Every extractor cuts a mono clip at its `sample_rate` into T windows of w seconds, by default
non-overlapping from the clip start (`mer_lib.data.windows`: short clips get masked windows, long
clips are cut; other layouts place them over the speech, spread them, or take the whole clip),
describes each present window by one vector and l2-normalises it (MATER, Ghaleb et al. 2023,
section 3.1). Masked windows are zero and no NaN ever leaves: a window whose description is not
finite is masked too.

VGGish (section 3.1.2): 16 kHz mono, STFT magnitudes with a 25 ms periodic Hann window and 10 ms hop,
64 mel bands between 125 and 7500 Hz, log(mel + 0.01), as in VGGish's own ``mel_features``; a
0.5 s window gives a 48 x 64 patch, a 0.25 s window 24 x 64, and the embedding is the 512-d output of
the last convolutional block, averaged over what remains of time and frequency.
"""
from __future__ import annotations

import functools
import os
import threading

import numpy as np
import opensmile
import torch
from opensmile.core.config import config as smile_config
from torch import nn

from mer_lib import parallel, weights
from mer_lib.data import windows
from mer_lib.errors import MerError
from mer_lib.features.pooling import l2_normalise

# VGGish's log-mel frontend (Hershey et al. 2017; vggish_params.py)
SAMPLE_RATE = 16000
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # one VGGish example: 0.96 s of 10 ms frames
VGGISH_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
MIN_VGGISH_FRAMES = 16  # four 2 x 2 max pools need at least 16 frames


# ----------------------------------------------------------------------------- log-mel frontend
def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale as VGGish uses it: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hertz, dtype=np.float64) / 700.0)


def stft_sizes(sample_rate: int) -> tuple[int, int, int]:
    """(window, hop, fft) lengths in samples: 25 ms, 10 ms, next power of two (400, 160, 512 at 16 kHz)."""
    window = int(round(sample_rate * STFT_WINDOW_SECONDS))
    return window, int(round(sample_rate * STFT_HOP_SECONDS)), 2 ** int(np.ceil(np.log2(window)))


@functools.lru_cache(maxsize=8)
def mel_matrix(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(fft/2+1, 64) triangular mel weights, 125-7500 Hz, equally spaced in mel (DC lies below: zero)."""
    if MEL_MAX_HZ > sample_rate / 2:
        raise MerError(f"the log-mel frontend needs a sample rate above {2 * MEL_MAX_HZ:g} Hz, got {sample_rate}")
    bins = stft_sizes(sample_rate)[2] // 2 + 1
    bin_mels = hertz_to_mel(np.linspace(0.0, sample_rate / 2, bins))[:, None]
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels - lower) / (centre - lower)
    falling = (upper - bin_mels) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """VGGish's log-mel spectrogram: (..., samples) -> (..., frames, 64) float32.

    frames = (samples - 400) // 160 + 1 at 16 kHz (none when the signal is shorter than one window).
    Leading axes are batch axes, so all windows of a clip go through one FFT call.
    """
    signal = np.asarray(signal, dtype=np.float64)
    length, hop, fft = stft_sizes(sample_rate)
    if signal.shape[-1] < length:
        return np.zeros(signal.shape[:-1] + (0, MEL_BANDS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(signal, length, axis=-1)[..., ::hop, :]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * hann, n=fft, axis=-1))
    return np.log(magnitude @ mel_matrix(sample_rate) + LOG_OFFSET).astype(np.float32)


def log_mel_patches(segments: np.ndarray, frames: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n, samples) windows -> (n, frames, 64) log-mel patches of exactly `frames` frames.

    Each window is zero-padded (or cut) to the samples that `frames` STFT frames span, so a 0.25 s
    window (23 whole frames) gives the paper's 24 x 64 patch and a 0.5 s window its 48 x 64 one.
    """
    length, hop, _ = stft_sizes(sample_rate)
    needed = length + hop * (frames - 1)
    fitted = np.zeros((len(segments), needed), dtype=np.float64)
    kept = min(needed, segments.shape[1])
    fitted[:, :kept] = segments[:, :kept]
    return log_mel(fitted, sample_rate)


# ----------------------------------------------------------------------------- extractor interface
class AudioExtractor:
    """Per-window audio embeddings: subclasses describe the present windows, this class does the rest.

    `embed(signal, window, count, layout)` takes a mono float32 signal at `sample_rate` and returns
    ((T, dim) float32 l2-normalised embeddings, (T,) bool mask); masked rows are zero. The layout
    (mer_lib.data.windows) places the windows; with ``clip`` there is one window, the whole signal, so
    `describe` gets windows of any length (its `window` argument is then the clip's duration).
    """

    name: str = ""
    dim: int = 0
    sample_rate: int = SAMPLE_RATE
    weights_sha256: str | None = None
    normalise: bool = True  # l2-normalise each window (MATER); raw inputs of a learned front-end stay raw

    def dim_for(self, window: float) -> int:
        """The size of one window's description (fixed for most extractors; patches grow with w)."""
        return self.dim

    def describe(self, segments: np.ndarray, window: float) -> np.ndarray:
        """(n, samples) present windows -> (n, dim) raw descriptions (may contain NaN: masked later)."""
        raise NotImplementedError

    def embed(self, signal: np.ndarray, window: float | None, count: int | None,
              layout: str = windows.FIXED) -> tuple[np.ndarray, np.ndarray]:
        """T window embeddings of one clip and the mask of windows that hold one."""
        embeddings, mask, _ = self.embed_planned(signal, window, count, layout)
        return embeddings, mask

    def embed_planned(self, signal: np.ndarray, window: float | None, count: int | None,
                      layout: str = windows.FIXED) -> tuple[np.ndarray, np.ndarray, windows.WindowPlan]:
        """`embed`, and the WindowPlan that placed the windows (its starts go into the store's provenance)."""
        signal = np.asarray(signal, dtype=np.float32)
        if signal.ndim != 1:
            raise MerError(f"{self.name} needs a mono 1-D signal, got shape {signal.shape} (mix channels first)")
        if not np.isfinite(signal).all():
            raise MerError("the audio signal contains NaN or infinite samples")
        plan = windows.plan_signal(signal, self.sample_rate, window, count, layout)
        embeddings, mask = self.embed_segments(windows.segment(signal, self.sample_rate, plan), plan.mask, plan.window)
        return embeddings, mask, plan

    def embed_segments(self, segments: np.ndarray, present: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
        """(n, samples) window segments -> (n, dim) embeddings of the `present` ones and their mask.

        A window whose description is not finite is masked too; masked rows are zero. Whole clips
        (`embed`) and the windows of a long recording (mer_lib.stream) both come through here.
        """
        mask = np.array(present, dtype=bool)
        embeddings = np.zeros((len(mask), self.dim_for(window)), dtype=np.float32)
        if mask.any():
            described = np.asarray(self.describe(segments[mask], window), dtype=np.float64)
            finite = np.isfinite(described).all(axis=1)
            mask[mask] = finite
            embeddings[mask] = l2_normalise(described[finite]) if self.normalise else described[finite]
        return embeddings, mask


# ----------------------------------------------------------------------------- VGGish
def vggish_frames(window: float) -> int:
    """Patch height for a window: VGGish's 96-frame example scaled to it (0.5 s -> 48, 0.25 s -> 24)."""
    frames = int(round(EXAMPLE_FRAMES * window))
    if frames < MIN_VGGISH_FRAMES:
        raise MerError(f"vggish needs windows of at least {MIN_VGGISH_FRAMES / EXAMPLE_FRAMES:.3f} s, got {window} s")
    return frames


class VGGishNet(nn.Module):
    """VGGish's convolutional trunk with torchvggish's layer names (``features.0.weight`` ...).

    3x3 convolutions with ReLU, 2x2 max pools: conv64-pool-conv128-pool-conv256-conv256-pool-
    conv512-conv512-pool. Input (n, frames, 64) log-mel patches; output (n, 512), the last
    convolutional block averaged over the remaining time x frequency map (3 x 4 for 48 frames,
    1 x 4 for 24). The AudioSet embedding head (``embeddings.*``) is not used by MATER.
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for layer in VGGISH_LAYERS:
            if layer == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, layer, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = layer
        self.features = nn.Sequential(*layers)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.features(patches.unsqueeze(1)).mean(dim=(2, 3))


def load_vggish(weights_name: str = "vggish") -> VGGishNet:
    """VGGishNet with the registry's weights (AudioSet by default); MerError when missing or unfit."""
    return weights.load_trunk(VGGishNet(), weights.load_state_dict(weights_name), weights_name, "VGGish")


class VGGish(AudioExtractor):
    """The paper's audio embedding: 512-d VGGish last-convolutional features per window."""

    name, dim = "vggish", 512

    def __init__(self, weights_name: str = "vggish"):
        self.net = load_vggish(weights_name)
        self.weights_sha256 = weights.sha256_file(weights.resolve(weights_name))

    def describe(self, segments: np.ndarray, window: float) -> np.ndarray:
        patches = torch.from_numpy(log_mel_patches(segments, vggish_frames(window), self.sample_rate))
        with torch.no_grad():
            return self.net(patches).numpy()


# ----------------------------------------------------------------------------- log-mel statistics
class LogMel(AudioExtractor):
    """Mean and standard deviation over frames of VGGish's 64-band log-mel: 128-d, no weights."""

    name, dim = "logmel", 2 * MEL_BANDS

    def describe(self, segments: np.ndarray, window: float) -> np.ndarray:
        if segments.shape[1] < stft_sizes(self.sample_rate)[0]:
            raise MerError(f"logmel needs windows of at least {STFT_WINDOW_SECONDS} s, got {window} s")
        spectra = log_mel(segments, self.sample_rate)
        return np.concatenate([spectra.mean(axis=1), spectra.std(axis=1)], axis=1)


class LogMelPatches(AudioExtractor):
    """Each window's whole 64-band log-mel patch (frames x bands, flattened), not normalised.

    The input of MATER's learned audio front-end (`mer_lib.models.frontend`), which is trained end to
    end inside each fold instead of relying on pretrained weights: a 0.5 s window gives 48 x 64 values.
    Patches are stored raw (log(mel + 0.01)); the model standardises them with the training clips'
    statistics. The clip layout is refused: a patch has a fixed number of frames.
    """

    name, normalise = "logmel_patches", False

    def frames(self, window: float) -> int:
        """STFT frames (25 ms, 10 ms hop) that fit in a window: 48 for 0.5 s, 23 for 0.25 s."""
        length, hop, _ = stft_sizes(self.sample_rate)
        frames = (int(round(window * self.sample_rate)) - length) // hop + 1
        if frames < 1:
            raise MerError(f"logmel_patches needs windows of at least {STFT_WINDOW_SECONDS} s, got {window} s")
        return frames

    def dim_for(self, window: float) -> int:
        return self.frames(window) * MEL_BANDS

    def embed_planned(self, signal, window, count, layout=windows.FIXED):
        if layout == windows.CLIP:
            raise MerError("logmel_patches needs windows of one length: use the fixed, voiced or spread layout")
        return super().embed_planned(signal, window, count, layout)

    def describe(self, segments: np.ndarray, window: float) -> np.ndarray:
        return log_mel_patches(segments, self.frames(window), self.sample_rate).reshape(len(segments), -1)


# ----------------------------------------------------------------------------- openSMILE functionals
class SmilePipeline:
    """One openSMILE functionals pipeline, built once and run again for every segment.

    opensmile-python builds a new pipeline for each call: parsing the configuration and creating its
    components take 6 of the 13 ms a 0.5 s eGeMAPS window costs, freeing them 1 ms more. openSMILE's
    own `reset` clears a finished run's state so that the same pipeline can run again, and the
    functionals are then those of a fresh call, bit for bit (tested against `process_signal`). This
    uses opensmile-python's internals (its OpenSMILE wrapper and the external source and sink of its
    configuration files), as the pinned version (pyproject.toml) has them.
    """

    def __init__(self, feature_set: str, sample_rate: int):
        smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                                feature_level=opensmile.FeatureLevel.Functionals)
        source = os.path.join(smile.default_config_root, smile_config.EXTERNAL_INPUT_CONFIG)
        self.api = smile._smile(smile._options() | {"source": source, "sampleRate": sample_rate, "nBits": 16})
        self.n_features = smile.num_features
        self.lock = threading.Lock()  # one run at a time

    def __call__(self, segment: np.ndarray) -> np.ndarray:
        """(n_features,) functionals of a float segment in [-1, 1); NaN when it is too short for openSMILE."""
        pcm = (segment * 32768).astype(np.int16)  # as opensmile-python converts (truncating)
        rows = []
        with self.lock, parallel.signals_deferred():  # a Ctrl-C in the sink's callback would be dropped
            # a reset forgets the sink's callback: it is registered for each run, the previous one released
            self.api.external_sink_set_callback_ex(smile_config.EXTERNAL_OUTPUT_COMPONENT,
                                                   lambda data, meta: rows.append(data.copy()))
            del self.api._callbacks[:-1]
            try:
                self.api.external_audio_source_write_data(smile_config.EXTERNAL_SOURCE_COMPONENT, pcm.tobytes())
                self.api.external_audio_source_set_eoi(smile_config.EXTERNAL_SOURCE_COMPONENT)
                self.api.run()
            finally:
                self.api.reset()
        return rows[0].reshape(-1) if rows else np.full(self.n_features, np.nan)


@functools.cache
def smile_pipeline(feature_set: str, sample_rate: int, pid: int) -> SmilePipeline:
    """This process's pipeline for a feature set (`pid`: a forked child builds its own)."""
    return SmilePipeline(feature_set, sample_rate)


class OpenSmileFunctionals(AudioExtractor):
    """openSMILE functionals of each window on its own (the window is openSMILE's whole segment), one
    run of this process's `SmilePipeline` per window."""

    feature_set = ""

    def describe(self, segments: np.ndarray, window: float) -> np.ndarray:
        pipeline = smile_pipeline(self.feature_set, self.sample_rate, os.getpid())
        # openSMILE reads 16-bit PCM: samples beyond +-1 (e.g. resampling overshoot) would wrap around
        clipped = np.clip(segments, -1.0, 32767 / 32768)
        return np.stack([pipeline(segment) for segment in clipped])  # NaN rows: masked by embed


class EGeMAPS(OpenSmileFunctionals):
    """eGeMAPS v02 functionals (Eyben et al. 2016): 88-d, the offline default."""

    name, dim, feature_set = "egemaps", 88, "eGeMAPSv02"


class ComParE(OpenSmileFunctionals):
    """ComParE 2016 functionals: 6373-d."""

    name, dim, feature_set = "compare", 6373, "ComParE_2016"


AUDIO_EXTRACTORS: dict[str, type[AudioExtractor]] = {
    extractor.name: extractor for extractor in (VGGish, EGeMAPS, ComParE, LogMel, LogMelPatches)}


def make_audio_extractor(name: str) -> AudioExtractor:
    """An extractor instance by registry name; MerError listing the known names otherwise."""
    if name not in AUDIO_EXTRACTORS:
        raise MerError(f"unknown audio extractor {name!r}; known: {', '.join(AUDIO_EXTRACTORS)}")
    return AUDIO_EXTRACTORS[name]()
