"""Noisy time windows: MATER's test-time noise (section 5.1) and Algorithm 1's training noise (5.2.1).

Both replace the embeddings of some time windows of each clip with Gaussian noise. Where the noise
lives decides what the experiment measures, so it is drawn in the space the model sees and only in
the windows the clip has:

- **Space.** The paper's window embeddings are l2-normalised (section 3.1) and go into the encoder
  as they are, so its noise windows are random directions of the embeddings' length. Here the model
  sees each window after `mer_lib.models.standardized.Standardized` (z-scored per dimension with the
  training clips' statistics). A noise window is therefore a N(0, I) direction given the norm of the
  window it replaces, in that standardised space, and mapped back through the inverse z-score. Its
  size then matches a real window's whatever the extractor's scale (eGeMAPS mixes Hz, dB and ratios);
  with unstandardised l2-normalised windows the same rule gives the paper's unit-norm noise.
- **Valid windows only.** Positions are drawn among the clip's present windows (mask True): a clip
  with k or more present windows gets exactly k noisy ones, a shorter clip has all its windows
  replaced, and padded windows are never touched.

`space` arguments take the model (its `standardise` and `restore` maps, see `input_space`); without
one the windows are taken as the model sees them. These functions only read and replace a ClipData's tensors, so the
training loop and the analyses (`mer_lib.analysis.noise`) share them without importing each other.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mer_lib.data.modalities import MODALITY_NAMES, check_modalities
from mer_lib.errors import MerError


def check_present(data, modality: str) -> None:
    """MerError unless `data` has windows of every modality in `modality`."""
    for m in check_modalities(modality):
        if getattr(data, MODALITY_NAMES[m]) is None:
            raise MerError(f"the clips have no {MODALITY_NAMES[m]} windows to put noise in or drop")


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def input_space(model):
    """The model as a `space` when it standardises its windows (has `standardise` and `restore`), else None."""
    return model if hasattr(model, "standardise") and hasattr(model, "restore") else None


def random_windows(counts: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A (N, T) boolean selection of min(counts[i], present windows) windows among row i's present ones.

    Each row ranks T uniform draws with the padded windows (mask False) ranked last; the windows
    ranked below the row's count are chosen, so the positions are a uniformly random subset of the
    present windows, independently per clip.
    """
    mask = mask.to(_device(generator))
    draws = torch.rand(mask.shape, generator=generator, device=mask.device).masked_fill(~mask, 2.0)
    ranks = draws.argsort(1).argsort(1)
    return (ranks < counts.to(mask.device)[:, None]) & mask


def noise_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian directions with the norm of each window of x (B, T, d): random content, the same size."""
    direction = F.normalize(torch.randn(x.shape, generator=generator, device=_device(generator)), dim=-1)
    return direction.to(x.device, x.dtype) * x.norm(dim=-1, keepdim=True)


def replace_windows(data, m: str, selected: Tensor, generator: torch.Generator | None = None, space=None):
    """A new ClipData whose modality `m` windows where `selected` (N, T) is True are noise (module docstring)."""
    name = MODALITY_NAMES[m]
    x = getattr(data, name)
    seen = space.standardise(m, x) if space is not None else x
    noise = noise_like(seen, generator)
    noise = space.restore(m, noise) if space is not None else noise
    return replace(data, **{name: torch.where(selected.to(x.device)[..., None], noise, x)})


def inject_noise(data, modality: str, k: int, generator: torch.Generator | None = None, space=None):
    """Replace k randomly placed present windows of every clip with noise (section 5.1).

    `modality` is "a", "v" or "av"; with "av" the audio and video windows are chosen independently.
    A clip with fewer than k present windows has all of them replaced. Masks, labels and the other
    modality are unchanged, and `data` itself is not modified (a new ClipData is returned).
    """
    check_present(data, modality)
    n_windows = data.n_windows
    if not isinstance(k, (int, np.integer)) or not 0 <= k <= n_windows:
        raise MerError(f"number of noisy windows k={k!r} must be an integer in 0..{n_windows} (T)")
    counts = torch.full((len(data),), int(k))
    for m in modality:
        selected = random_windows(counts, getattr(data, f"{MODALITY_NAMES[m]}_mask"), generator)
        data = replace_windows(data, m, selected, generator, space)
    return data


def algorithm1(batch, modality: str, generator: torch.Generator | None = None, return_counts: bool = False,
               space=None):
    """Algorithm 1's training-time noise (section 5.2.1): each sample gets a random number of noisy
    windows, uniform in 1..max(1, P // 2) for its P present windows (the paper's "half the time
    windows", T // 2 for a full clip), at random present positions, in audio, video or both ("av":
    counts and positions drawn independently per modality).

    Returns the noisy batch, and with `return_counts` also {modality: counts (N,)} of the noisy
    windows per sample (0 for a clip without windows). Without a `generator` torch's global
    generator is used, so the training loop's per-epoch seeding makes the noise reproducible.
    """
    check_present(batch, modality)
    counts = {}
    for m in modality:
        mask = getattr(batch, f"{MODALITY_NAMES[m]}_mask").to(_device(generator))
        largest = (mask.sum(1) // 2).clamp(min=1)
        drawn = 1 + (torch.rand(len(batch), generator=generator, device=mask.device) * largest).long()
        selected = random_windows(drawn, mask, generator)
        counts[m] = selected.sum(1)
        batch = replace_windows(batch, m, selected, generator, space)
    return (batch, counts) if return_counts else batch


def drop_modality(data, modality: str):
    """The clips with one modality ("a" or "v") missing: all its windows zeroed and masked out.

    Late fusion then averages only the present modality (mer_lib.models.mater.LateFusion).
    """
    if modality not in ("a", "v"):
        raise MerError(f"drop_modality drops one modality, 'a' or 'v' (got {modality!r})")
    check_present(data, modality)
    name = MODALITY_NAMES[modality]
    x = getattr(data, name)
    return replace(data, **{name: torch.zeros_like(x), f"{name}_mask": torch.zeros(x.shape[:2], dtype=torch.bool,
                                                                                  device=x.device)})
