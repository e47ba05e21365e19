"""Training losses: the emotion metric loss of Mocanu et al. (2023) and the CCC loss of dimensional ER.

Emotion metric loss (Mocanu et al. 2023, section 3.4). Embeddings x are l2-normalised and compared
with squared Euclidean distances d(a, b) = ||x_a - x_b||^2. The plain triplet loss (eq. 13) asks every
anchor a to be closer to a positive p (same emotion) than to any sample of another emotion by a
margin alpha (eq. 12). The emotion constraint adds the polarity of Mikels' wheel: happy, calm and
surprised are positive; sad, fearful, angry and disgust negative; neutral has no polarity. A
*related* emotion is another emotion of the anchor's polarity; a related sample r must be closer to
the anchor than a sample n of the opposite polarity by a margin beta (eq. 15). Eq. 16 sums both
hinges:

    sum [d(a, p) - d(a, r1) + alpha]_+  +  sum [d(a, r2) - d(a, n) + beta]_+

Choices the paper leaves open, made here and kept visible:
- r1 in the first hinge ranges over every sample of another emotion, not only the related ones
  (eq. 14 names r1 "related"). Related samples are the ones the loss wants nearest among the other
  emotions, so eq. 14 is the binding case; taking all of them also constrains neutral samples
  (neither related nor opposite) and makes the first hinge exactly the plain triplet loss of eq. 13.
  The emotion loss is therefore "triplet loss + polarity hinge", and anchors with no related emotion
  (neutral; CREMA-D's happy, the only positive class there) get the plain triplet loss, as the
  paper prescribes for neutral.
- Triplets are mined inside the mini-batch ("all": every valid triplet, averaged, the paper's sum
  up to a constant; "hard": per anchor the farthest positive and the nearest negative, Hermans et
  al. 2017). A batch with no valid triplet contributes zero.
- The paper gives no values for alpha or beta; the defaults (0.2, 0.2) are FaceNet's margin on
  unit-norm embeddings (squared distances lie in [0, 4]).

How the metric loss meets classification. The paper trains with the metric loss alone: "the training
is performed by minimizing the proposed emotional metric loss" (section 3), "minimize the loss
function in Eq. 16" (section 3.4), and for the ablations "the framework architecture ends with one fully
connected layer having the number of neurons equal to the total number of emotion classes ... the
traditional triplet loss function is used to train the network" (section 4.3). Softmax, triplet and
emotion losses are alternatives on that last layer (Figures 6-7 a, b, c; Table 3 has no cross-entropy
term and no weight), so no cross-entropy is added. (The abstract's "classification loss based on an
emotional metric constraint" and section 2.3's "classification loss that integrates an emotional
metric constraint" could be read as cross-entropy plus a constraint, but no equation, table or figure
of the paper has that sum.) The paper does not say how a class is read from a
metric-trained layer; the course takes the nearest class centre (the mean of the training clips'
l2-normalised outputs, `mer_lib.models.cross_attention`). That is ``metric_loss="alone"`` (preset
``mocanu``). The other reading, ``"with_softmax"``, keeps the classifier: cross-entropy on the logits
plus `weight` (1.0: an even weighting) x the metric loss on the first fully connected layer's output.

CCC (Lin 1989), the measure and loss of valence-arousal regression (Praveen et al. 2023):
CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), in [-1, 1]; loss = 1 - CCC, in [0, 2].
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from mer_lib.errors import MerError
from mer_lib.models.registry import LOSS_KINDS, METRIC_LOSSES

# Mikels' wheel as used by Mocanu et al. (section 3.4): +1 positive, -1 negative, 0 neutral.
POLARITY = {"happy": 1, "calm": 1, "surprised": 1, "neutral": 0,
            "sad": -1, "fearful": -1, "angry": -1, "disgust": -1}
ALIASES = {"happiness": "happy", "surprise": "surprised", "fear": "fearful", "anger": "angry",
           "sadness": "sad", "disgusted": "disgust"}
MINING = ("all", "hard")
ALPHA, BETA, WEIGHT = 0.2, 0.2, 1.0


def polarities(classes: Sequence[str]) -> Tensor:
    """The Mikels-wheel polarity (+1, -1, 0) of each class name, in label order; MerError for unknown names."""
    names = [ALIASES.get(c.lower(), c.lower()) for c in classes]
    unknown = [c for c, n in zip(classes, names) if n not in POLARITY]
    if unknown:
        raise MerError(f"no emotion polarity for class(es) {', '.join(map(repr, unknown))} "
                       f"(known: {', '.join(POLARITY)})")
    if len(set(names)) != len(names):
        raise MerError(f"duplicate emotion classes in {list(classes)}")
    return torch.tensor([POLARITY[n] for n in names])


def squared_distances(embedding: Tensor) -> Tensor:
    """d(a, b) = ||x_a - x_b||^2 between the l2-normalised embeddings (B, D); shape (B, B)."""
    x = F.normalize(embedding, dim=1)
    return (2.0 - 2.0 * x @ x.T).clamp(min=0.0)


def _hinge(distances: Tensor, near: Tensor, far: Tensor, margin: float, mining: str) -> Tensor:
    """Mean of [d(a, near) - d(a, far) + margin]_+ over the mined triplets (a, near, far).

    `near` and `far` are (B, B) bool masks of the allowed (anchor, sample) pairs: "all" averages
    every triplet with near[a, i] and far[a, j]; "hard" takes, per anchor, the farthest allowed
    `near` sample and the nearest allowed `far` sample. Zero (with a gradient path) when none exists.
    """
    if mining == "all":
        valid = near[:, :, None] & far[:, None, :]
        losses = (distances[:, :, None] - distances[:, None, :] + margin).clamp(min=0.0)[valid]
    else:
        anchors = near.any(1) & far.any(1)
        hardest_near = distances.masked_fill(~near, float("-inf")).amax(1)
        hardest_far = distances.masked_fill(~far, float("inf")).amin(1)
        losses = (hardest_near - hardest_far + margin)[anchors].clamp(min=0.0)
    return losses.mean() if losses.numel() else distances.sum() * 0.0


def triplet_loss(embedding: Tensor, labels: Tensor, alpha: float = ALPHA, mining: str = "all") -> Tensor:
    """Plain triplet loss (eq. 13): positives closer than every other emotion by alpha."""
    distances = squared_distances(embedding)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return _hinge(distances, positive, ~same, alpha, mining)


def emotion_metric_loss(embedding: Tensor, labels: Tensor, polarity: Tensor, alpha: float = ALPHA,
                        beta: float = BETA, mining: str = "all") -> Tensor:
    """Emotion metric loss (eq. 16): triplet hinge (eqs. 13/14) + polarity hinge (eq. 15).

    `polarity` (C,) gives each class's polarity (see `polarities`). Related pairs (a, r2): another
    emotion of the anchor's non-zero polarity; opposite pairs (a, n): polarities of opposite sign.
    Anchors without related samples (neutral always) only get the triplet hinge.
    """
    distances = squared_distances(embedding)
    sign = polarity.to(labels.device)[labels]
    same = labels[:, None] == labels[None, :]
    related = ~same & (sign[:, None] == sign[None, :])  # neutral, alone at 0, has no related class
    opposite = sign[:, None] * sign[None, :] < 0
    return (triplet_loss(embedding, labels, alpha, mining)
            + _hinge(distances, related, opposite, beta, mining))


def make_loss(kind: str, classes: Sequence[str], alpha: float = ALPHA, beta: float = BETA,
              weight: float = WEIGHT, mining: str = "all",
              metric_loss: str = "with_softmax", label_smoothing: float = 0.0) -> Callable[[object, Tensor], Tensor]:
    """The training loss `(output, labels) -> scalar` of the ablation `kind` (Mocanu et al. Table 3, Fig. 6).

    "softmax": cross-entropy on ``output.logits``. "triplet" and "emotion": the triplet loss (eq. 13)
    or the emotion metric loss (eq. 16) on ``output.embedding``, alone (`metric_loss` "alone", the
    paper's reading; the model's embedding is then its last layer) or added as `weight` x metric to the
    cross-entropy ("with_softmax"). `classes` are the dataset's emotion names in label order (RAVDESS 8,
    CREMA-D 6; not needed by "softmax"). `label_smoothing` s trains the cross-entropy against
    (1 - s) x one-hot + s x uniform targets (Szegedy et al. 2016), so that a model that fits its few
    training speakers is not pushed to certainty on them.
    """
    if kind not in LOSS_KINDS:
        raise MerError(f"unknown loss {kind!r} (choose {', '.join(LOSS_KINDS)})")
    if metric_loss not in METRIC_LOSSES:
        raise MerError(f"unknown metric loss combination {metric_loss!r} (choose {' or '.join(METRIC_LOSSES)})")
    if mining not in MINING:
        raise MerError(f"unknown triplet mining {mining!r} (choose {' or '.join(MINING)})")
    if alpha <= 0 or beta <= 0 or weight < 0:
        raise MerError(f"margins must be positive and the weight non-negative "
                       f"(alpha={alpha}, beta={beta}, weight={weight})")
    polarity = polarities(classes) if kind != "softmax" else None

    def metric(embedding: Tensor, labels: Tensor) -> Tensor:
        if kind == "triplet":
            return triplet_loss(embedding, labels, alpha, mining)
        return emotion_metric_loss(embedding, labels, polarity, alpha, beta, mining)

    def loss(output, labels: Tensor) -> Tensor:
        if kind != "softmax" and metric_loss == "alone":
            return metric(output.embedding, labels)
        cross_entropy = F.cross_entropy(output.logits, labels, label_smoothing=label_smoothing)
        if kind == "softmax":
            return cross_entropy
        return cross_entropy + weight * metric(output.embedding, labels)

    return loss


def ccc(pred: Tensor, target: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Lin's concordance correlation coefficient along the last axis (one value per series).

    `mask` (same shape, bool) keeps only the True entries of each series. Population moments, as in
    Lin (1989); `eps` keeps constant series finite.
    """
    if pred.shape != target.shape:
        raise MerError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    weights = torch.ones_like(pred) if mask is None else mask.to(pred.dtype).expand_as(pred)
    count = weights.sum(-1).clamp(min=1.0)
    mean_p = (pred * weights).sum(-1) / count
    mean_t = (target * weights).sum(-1) / count
    dp, dt = pred - mean_p[..., None], target - mean_t[..., None]
    var_p = (weights * dp ** 2).sum(-1) / count
    var_t = (weights * dt ** 2).sum(-1) / count
    cov = (weights * dp * dt).sum(-1) / count
    return 2.0 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)


def ccc_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """1 - CCC averaged over the dimensions (valence, arousal); in [0, 2].

    `pred`, `target`: (B, T, 2) per-window valence and arousal; `mask` (B, T) marks valid windows.
    The CCC of each dimension is taken over all valid windows of the batch (one long series).
    """
    if pred.ndim != 3 or pred.shape != target.shape:
        raise MerError(f"ccc_loss expects (batch, windows, dims) predictions and targets of one shape, "
                       f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    flat_mask = None if mask is None else mask.bool().reshape(1, -1)
    per_dim = ccc(pred.reshape(-1, pred.shape[-1]).T, target.reshape(-1, target.shape[-1]).T, flat_mask)
    return 1.0 - per_dim.mean()
