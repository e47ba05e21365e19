"""`ClipData`: the labels and window embeddings of a set of clips, as whole tensors.

Training, testing, analyses and predictions on new recordings all pass clips this way: embeddings are
small, so a set of clips stays in memory (on the device) and batches are taken by index (`take`),
without a DataLoader or per-clip Python work. The models' forward takes `inputs()` as keywords.
Which clips of a data folder a run uses, and their stores, is mer_lib.features.corpus.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor


@dataclass
class ClipData:
    """The labels and window embeddings of a set of clips, as whole tensors (batched by index)."""

    labels: Tensor  # (N,) long class labels; a regression's targets instead (mer_lib.dimensional: (N, T, 2))
    n_classes: int
    audio: Tensor | None = None  # (N, T, d) float32
    audio_mask: Tensor | None = None  # (N, T) bool
    video: Tensor | None = None
    video_mask: Tensor | None = None

    @classmethod
    def from_numpy(cls, labels, n_classes: int, audio=None, audio_mask=None, video=None,
                   video_mask=None) -> ClipData:
        """Wrap NumPy arrays (masks default to all windows present)."""
        def windows(x, mask):
            if x is None:
                return None, None
            x = torch.as_tensor(np.asarray(x, np.float32))
            mask = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
            return x, mask

        audio, audio_mask = windows(audio, audio_mask)
        video, video_mask = windows(video, video_mask)
        return cls(torch.tensor(np.asarray(labels), dtype=torch.long), n_classes, audio, audio_mask,
                   video, video_mask)

    def __len__(self) -> int:
        return len(self.labels)

    def _map(self, fn) -> ClipData:
        tensors = {f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                   for f in fields(self) if f.name != "n_classes"}
        return replace(self, **tensors)

    def take(self, index) -> ClipData:
        """The clips at `index` (a tensor or array of positions)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.labels.device)
        return self._map(lambda t: t[index])

    def to(self, device: torch.device) -> ClipData:
        return self._map(lambda t: t.to(device))

    def inputs(self) -> dict[str, Tensor | None]:
        """Keyword arguments of the models' forward."""
        return {"audio": self.audio, "video": self.video, "audio_mask": self.audio_mask,
                "video_mask": self.video_mask}

    def dims(self) -> dict[str, int]:
        """The embedding size of each modality present ("a", "v")."""
        return {m: x.shape[-1] for m, x in (("a", self.audio), ("v", self.video)) if x is not None}

    @property
    def n_windows(self) -> int:
        """T, the windows per clip."""
        return next(x.shape[1] for x in (self.audio, self.video) if x is not None)
