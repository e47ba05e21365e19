"""Training-time augmentation of log-mel patches and of whole batches; never applied to test clips.

Used by the training loop on the training clips of each fold only (`mer_lib.train.run_epoch`):

- SpecAugment (Park et al. 2019): random frequency and time masks on each window's log-mel patch,
  with torchaudio's FrequencyMasking and TimeMasking (one independent mask per window and axis).
- Additive noise in the mel domain: a flat noise floor `snr` dB below each clip's loudest mel bin is
  added to the magnitudes, log(mel + noise) = logaddexp(log mel, log noise), so quiet parts drown
  first as they do under real stationary noise (SNR drawn per clip between `snr` and `snr` + 20 dB).
- Speed and vocal-tract-length perturbation in the mel domain (`warp`): each training clip's patches
  are stretched along time (tempo, as speed perturbation does; Ko et al. 2015) and along the mel axis
  from 0 Hz (formants and pitch moved together, as VTLP's frequency warping does; Jaitly and Hinton
  2013), by factors drawn per clip from [1 - amount, 1 + amount]. With few training speakers (10 on
  the development folds) this makes voices the folds never had.
- mixup (Zhang et al. 2018): convex combinations of two clips' windows and of their one-hot labels,
  with a Beta(alpha, alpha) weight per batch; the masks are united.

Patches are (B, T, frames * bands) as stored by `LogMelPatches`; padded windows stay untouched.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F
from torchaudio import transforms

FREQ_MASK_BANDS = 12  # widest frequency mask, of 64 mel bands (about Park et al.'s F = 27 of 80, scaled down)
TIME_MASK_FRAMES = 10  # widest time mask, of the 48 frames of a 0.5 s window


def spec_augment(patches: Tensor, mask: Tensor, bands: int = 64) -> Tensor:
    """One frequency mask and one time mask per present window of (B, T, frames * bands) log-mel patches."""
    b, t, d = patches.shape
    frames = d // bands
    spectra = patches.reshape(b * t, 1, frames, bands).transpose(2, 3)  # (windows, 1, bands, frames)
    keep = transforms.FrequencyMasking(FREQ_MASK_BANDS, iid_masks=True)(torch.ones_like(spectra))
    keep = transforms.TimeMasking(min(TIME_MASK_FRAMES, frames // 2), iid_masks=True)(keep)
    masked = spectra.masked_fill(keep == 0, float(spectra.amin()))  # masked cells read as silence, not 0
    out = masked.transpose(2, 3).reshape(b, t, d)
    return torch.where(mask[..., None], out, patches)


def add_noise(patches: Tensor, mask: Tensor, snr: float) -> Tensor:
    """Mel-domain additive noise at a per-clip SNR drawn from [snr, snr + 20] dB (relative to the loudest bin)."""
    loudest = patches.masked_fill(~mask[..., None], -math.inf).amax(dim=(1, 2), keepdim=True)
    snr_db = snr + 20.0 * torch.rand(len(patches), 1, 1, device=patches.device)
    noise = loudest - snr_db / 20.0 * math.log(10.0)  # magnitudes: 20 dB per decade
    return torch.where(mask[..., None], torch.logaddexp(patches, noise), patches)


def scale_axes(patches: Tensor, mask: Tensor, time: Tensor, frequency: Tensor, bands: int = 64) -> Tensor:
    """Each clip's (B, T, frames * bands) patches resampled with its own (B,) `time` and `frequency` factors.

    A time factor r plays the window r times as fast (about its centre frame, edges repeated); a
    frequency factor a moves the content of mel band k to band a*k (from 0 Hz, the top band repeated).
    Bilinear interpolation, one batched grid_sample; padded windows stay untouched."""
    b, t, d = patches.shape
    frames = d // bands
    theta = patches.new_zeros(b, 2, 3)  # per clip: input coordinate = theta @ output coordinate, both in [-1, 1]
    theta[:, 0, 0] = 1.0 / frequency  # x: mel band, anchored at -1 (0 Hz)
    theta[:, 0, 2] = 1.0 / frequency - 1.0
    theta[:, 1, 1] = time  # y: frame, about the centre
    theta = theta.repeat_interleave(t, dim=0)
    images = patches.reshape(b * t, 1, frames, bands)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(mask[..., None], out.reshape(b, t, d), patches)


def warp(patches: Tensor, mask: Tensor, amount: float, bands: int = 64) -> Tensor:
    """Speed and vocal-tract-length perturbation: `scale_axes` with factors drawn per clip from
    [1 - amount, 1 + amount]."""
    factors = 1.0 + amount * (2.0 * torch.rand(2, len(patches), device=patches.device) - 1.0)
    return scale_axes(patches, mask, factors[0], factors[1], bands)


def mixup(inputs: dict[str, Tensor | None], targets: Tensor, alpha: float) -> tuple[dict[str, Tensor | None], Tensor]:
    """Mix every clip with a shuffled partner: windows by lambda ~ Beta(alpha, alpha), masks united, soft targets.

    `inputs` holds the models' forward arguments ("audio", "audio_mask", "video", "video_mask");
    `targets` (B, C) are one-hot or soft labels.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(targets), device=targets.device)
    mixed = {}
    for name, x in inputs.items():
        if x is None:
            mixed[name] = None
        elif name.endswith("_mask"):
            mixed[name] = x | x[partner]
        else:
            mixed[name] = lam * x + (1 - lam) * x[partner]
    return mixed, lam * targets + (1 - lam) * targets[partner]
