"""The fused embedding of the fusion models, and its t-SNE map (Mocanu et al. 2023, Figures 6 and 7).

The fused embedding is the vector the run's loss shapes: the first fully connected layer after the
cross-modal fusion, or the last one (one output per class) when the metric loss trains alone (the
paper's reading, mer_lib.models.losses). Softmax alone separates classes only as far as the classifier
needs; the triplet loss pulls each emotion together; the emotion constraint also keeps emotions of one
polarity nearer each other than emotions of the other. A 2-D t-SNE of the test clips' embeddings shows
the difference.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.manifold import TSNE

from mer_lib.errors import MerError
from mer_lib.run_folder import TrainedRun


@torch.no_grad()
def fused_embeddings(run: TrainedRun) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, D), labels (N,)) of every fold's test clips under that fold's model."""
    vectors, labels = [], []
    for fold, model in run.models.items():
        data = run.test_data(fold)
        output = model(**data.inputs())
        if output.embedding is None:
            raise MerError(f"{run.config.model} has no fused embedding (use cross_attention or jca)")
        vectors.append(output.embedding.cpu().numpy())
        labels.append(data.labels.numpy())
    return np.concatenate(vectors), np.concatenate(labels)


def tsne(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE map of `vectors` (l2-normalised first, as the metric losses compare them)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    perplexity = min(30.0, (len(unit) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(unit)
