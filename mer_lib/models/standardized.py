"""`Standardized`: every trained network behind a per-dimension z-score of its input windows, and
`build_model`, which builds a network of the registry (mer_lib.models.registry) from the training
settings, sized to the data, behind it.

Training (mer_lib.train), loading a fold's checkpoint (mer_lib.checkpoints), the benchmarks and the
noise analyses build models here, so a checkpoint's weights always meet the same wrapper.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mer_lib.data.clips import ClipData
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError
from mer_lib.models import registry


class Standardized(nn.Module):
    """A model behind a per-dimension z-score of its input windows, with the training clips' statistics.

    Window embeddings mix scales: eGeMAPS functionals put loudness, semitones, Hz and ratios side by
    side, so after l2 normalisation a few dimensions carry almost all the length. Standardising each
    dimension (a step the papers do not mention) lifted the fast preset on the embedded corpus from
    0.22 / 0.44 / 0.43 to 0.43 / 0.62 / 0.72 accuracy for a / v / av (MATER d_model 64, 2 layers).
    The statistics are buffers, so checkpoints carry them and test clips and new recordings are
    standardised exactly as the training clips were. Unfitted, the wrapper is the identity.
    """

    def __init__(self, model: nn.Module, dims: dict[str, int]):
        super().__init__()
        self.model = model
        self.config = model.config
        for m, d in dims.items():
            self.register_buffer(f"mean_{m}", torch.zeros(d))
            self.register_buffer(f"std_{m}", torch.ones(d))

    @torch.no_grad()
    def fit(self, data: ClipData) -> Standardized:
        """Set the statistics from the present windows of `data`."""
        for m, (x, mask) in _windows(data.audio, data.audio_mask, data.video, data.video_mask).items():
            if hasattr(self, f"mean_{m}") and mask.any():
                present = x[mask]
                getattr(self, f"mean_{m}").copy_(present.mean(0))
                getattr(self, f"std_{m}").copy_(present.std(0, unbiased=False).clamp(min=1e-6))
        return self

    def standardise(self, m: str, x: Tensor) -> Tensor:
        """Modality m's windows as the wrapped model sees them (z-scored; unchanged for an unwrapped modality)."""
        return (x - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}") if hasattr(self, f"mean_{m}") else x

    def restore(self, m: str, z: Tensor) -> Tensor:
        """The inverse of `standardise`: windows in the model's space back in the stored embeddings' space."""
        return z * getattr(self, f"std_{m}") + getattr(self, f"mean_{m}") if hasattr(self, f"mean_{m}") else z

    def forward(self, audio: Tensor | None = None, video: Tensor | None = None, audio_mask: Tensor | None = None,
                video_mask: Tensor | None = None, **kwargs):
        """The wrapped model's forward on standardised windows (padded windows stay zero)."""
        z = {}
        for m, (x, mask) in _windows(audio, audio_mask, video, video_mask).items():
            x = self.standardise(m, x)
            z[m] = x if mask is None or not hasattr(self, f"mean_{m}") else x.masked_fill(~mask.bool()[..., None], 0.0)
        return self.model(audio=z.get("a"), video=z.get("v"), audio_mask=audio_mask, video_mask=video_mask,
                          **kwargs)


def _windows(audio, audio_mask, video, video_mask) -> dict[str, tuple[Tensor, Tensor | None]]:
    """{"a": (audio, mask), "v": (video, mask)} for the modalities given."""
    return {m: (x, mask) for m, x, mask in (("a", audio, audio_mask), ("v", video, video_mask)) if x is not None}


def build_model(config, n_classes: int, dims: dict[str, int], n_windows: int) -> Standardized:
    """The model of `config` (training settings: mer_lib.config.TrainConfig), sized to the data's classes,
    embedding sizes and windows, behind `Standardized`."""
    missing = [MODALITY_NAMES[m] for m in config.modalities if m not in dims]
    if missing:
        raise MerError(f"modalities {config.modalities!r} need {' and '.join(missing)} embeddings")
    model = registry.build(config.model, registry.model_config(config, n_classes, dims, n_windows))
    return Standardized(model, {m: dims[m] for m in config.modalities})
