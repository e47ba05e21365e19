"""The models by name, and the names their settings choose from: adding a network is one entry here.

`NETWORKS` maps a name to its config class, its model class and the few config values the training
settings do not name alike. A network's config is built the same way for every network
(`model_config`): every field the training settings (mer_lib.config.TrainConfig) share with it by
name (modalities, d_model, heads, layers, d_ff, dropout, pe, mhsa, frontend, fusion, vs, vc,
frame_size), then what the data decides (n_classes, d_audio, d_video, n_windows), then the entry's
`derive`. `mer train --model`, `build_model`, loading a checkpoint, `make bench` and `mer report` (the
labels: `label`) all read this table. The baseline ladder (mer_lib.ladder) fits scikit-learn models
instead of training one: `MODELS` is the networks and its rungs.

The module imports no torch (classes are named, and imported when a model is built), so the `mer`
command can list the choices without loading the deep-learning stack.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from mer_lib.errors import MerError

FRONTENDS = ("linear", "conv")  # MATER's audio windows: stored embeddings, or learned from log-mel patches
LOSS_KINDS = ("softmax", "triplet", "emotion")  # cross-entropy, or Mocanu et al.'s metric losses (eqs. 12-16)
METRIC_LOSSES = ("alone", "with_softmax")  # how the triplet or emotion loss meets classification (models.losses)
LADDER = ("majority", "logreg", "svm")  # the baseline ladder's rungs (mer_lib.ladder)


@dataclass(frozen=True)
class Network:
    """A trainable network: where its classes live, its label in tables, and the config values the
    training settings give under other names or imply (`derive(settings)`)."""

    module: str  # e.g. mer_lib.models.mater
    config_name: str
    model_name: str
    label: str
    derive: Callable[[Any], dict] = lambda settings: {}

    @property
    def config(self) -> type:
        return getattr(importlib.import_module(self.module), self.config_name)

    @property
    def model(self) -> type:
        return getattr(importlib.import_module(self.module), self.model_name)


def centres_readout(settings) -> bool:
    """Whether `settings` train the metric loss alone, so classes are read out by the nearest class centre."""
    return settings.loss != "softmax" and settings.metric_loss == "alone"


def _cross_attention(settings) -> dict:
    """AT and VT (the temporal attention of each stream) are both MHSA's switch; the metric-learning
    embedding is as wide as the streams; a metric loss trained alone reads classes by the nearest centre."""
    derived = {"at": settings.mhsa, "vt": settings.mhsa, "d_embedding": settings.d_model,
               "readout": "centres" if centres_readout(settings) else "softmax"}
    if settings.frame_size is not None:  # cached maps: VS and VC see (m, h, w), not the flat m h w
        derived["d_video"] = settings.map_channels
    return derived


NETWORKS: dict[str, Network] = {
    "mater": Network("mer_lib.models.mater", "MaterConfig", "Mater", "MATER",
                     lambda s: {"inputs": "standardised" if s.standardize else "l2"}),
    "lstm": Network("mer_lib.models.baselines", "LstmConfig", "LstmBaseline", "LSTM baseline"),
    "cross_attention": Network("mer_lib.models.cross_attention", "CrossAttentionConfig", "CrossAttentionModel",
                               "cross-attention", _cross_attention),
    "jca": Network("mer_lib.models.jca", "JcaConfig", "JointCrossAttentionModel", "JCA"),
}
MODELS = tuple(NETWORKS) + LADDER


def network(name: str) -> Network:
    """The entry of network `name`; MerError naming the choices otherwise (a ladder rung has none)."""
    if name not in NETWORKS:
        raise MerError(f"{name!r} is not a network (choose {', '.join(NETWORKS)})")
    return NETWORKS[name]


def label(name: str) -> str:
    """How tables name model `name`: a network by its label, a ladder rung (or another kind of run, such as
    an ensemble) by its name."""
    return NETWORKS[name].label if name in NETWORKS else name


def model_config(settings, n_classes: int, dims: dict[str, int], n_windows: int):
    """The config of network `settings.model`, sized to the data's classes, embedding sizes ("a", "v")
    and windows T, with every setting it shares by name with `settings` (a TrainConfig)."""
    entry = network(settings.model)
    names = {f.name for f in fields(entry.config)}
    shared = {name: getattr(settings, name) for name in names if hasattr(settings, name)}
    data = {"n_classes": n_classes, "n_windows": n_windows, "d_audio": dims.get("a", settings.d_model),
            "d_video": dims.get("v", settings.d_model)}
    values = shared | {k: v for k, v in data.items() if k in names} | entry.derive(settings)
    return entry.config(**values)


def build(name: str, config):
    """The network `name` built from its config (see `model_config`)."""
    return network(name).model(config)
