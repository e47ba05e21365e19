"""The training settings: `TrainConfig`, its presets, and the choices and bounds of each setting.

The one source of truth for them: `mer train`'s flags (their names, types, choices, help) are made
from `TrainConfig`'s fields (`add_train_flags`), the model configs take the fields they share by name
(mer_lib.models.registry), and `DEFAULT_PRESET` is the preset of the library and of the command alike.
No torch is imported here, so the command line builds its parser without the deep-learning stack.

Training follows the MATER papers (Ghaleb et al. 2020 section 3.1; 2023 section 4.1): Adam,
cross-entropy on the fused (averaged) logits, batches of 64, an initial learning rate of 1e-6 that
is reduced when the validation loss has not improved for 20 epochs, 300 epochs, and subject-disjoint
k-fold cross-validation (RAVDESS 12 folds, CREMA-D 10). The papers do not give the reduction
factor; PyTorch's default (0.1) is used. That is the ``paper`` preset.

The ``fast`` preset, the default (Adam 1e-4, at most 60 epochs, plateau patience 5, early stopping
after 15 epochs without a better validation loss), gets there far sooner. On a RAVDESS-sized
synthetic store (24 actors, 8 emotions, T = 8, l2-normalised windows; MATER with 6 layers, 8 heads,
d_model 128; outer folds 0 and 1) the paper preset ended at 64% test accuracy after 300 epochs (35
minutes on one CPU thread, still improving); with the fast preset the validation accuracy passed
that by epoch 4 and the test accuracy ended at 85% after about 40 epochs (4 minutes). Learning rates
of 3e-5 (83% at the 60-epoch cap) and 3e-4 (86%) did about as well; 1e-3 was unstable (78%).

The MATER papers name no validation set, so ``validation`` makes the choice explicit: "actors" (the
paper and fast presets: the next fold's actors, mer_lib.data.folds.split) or "none" (every non-test
actor trains, 22 of 24 on RAVDESS, for a fixed number of epochs, the last one kept). `mer report`
shows which a run used.

The cross-modal model has its own published protocol, the ``mocanu`` preset (Mocanu et al. 2023,
sections 4.1-4.2): Adam at 1e-4, batches of 16, a constant learning rate, early stopping after 20
epochs without a better validation accuracy, and the metric loss alone (mer_lib.models.losses).
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import asdict, dataclass, field, fields

from mer_lib.data.modalities import MODALITIES, check_modalities
from mer_lib.errors import MerError, check_number
from mer_lib.models.registry import FRONTENDS, LADDER, LOSS_KINDS, METRIC_LOSSES, MODELS

SCHEDULES = ("plateau", "onecycle", "constant")
VALIDATIONS = ("actors", "none")
MONITORS = ("loss", "accuracy")
DEFAULT_PRESET = "fast"
PRESETS = {
    # MATER (Ghaleb et al. 2020 section 3.1; 2023 section 4.1). The papers name no validation set: "actors"
    # keeps the epoch with the best validation loss on the next fold's actors; `--validation none` is the
    # literal reading (every non-test actor trains, 300 epochs, the plateau schedule reads the training loss).
    "paper": {"lr": 1e-6, "epochs": 300, "patience": 20, "early_stopping": None, "validation": "actors"},
    "fast": {"lr": 1e-4, "epochs": 60, "patience": 5, "early_stopping": 15, "validation": "actors"},
    # The offline real-audio recipe (README, "Real RAVDESS audio"): MATER on a conv front-end learned from
    # log-mel patches, augmented, one-cycle AdamW for a fixed budget of optimizer steps on every non-test actor:
    # 760 = 40 epochs of 19 batches on 10 actors' 600 clips (the development folds); 22 actors train 18 epochs.
    # Label smoothing 0.1: the CNN fits its 10 training speakers to over 90 % and was certain of wrong answers
    # on new ones (mean top probability 0.8 at 53 % accuracy).
    "audio": {"lr": 2e-3, "epochs": 40, "steps": 760, "batch_size": 32, "schedule": "onecycle", "weight_decay": 1e-2,
              "early_stopping": None, "validation": "none", "frontend": "conv", "spec_augment": True,
              "label_smoothing": 0.1},
    # The cross-modal model (Mocanu et al. 2023, sections 4.1-4.2): train/validation/test actors, Adam at 1e-4
    # (beta1 0.9, the paper's "momentum"), batches of 16, training stopped when the validation accuracy has not
    # improved for 20 epochs; the metric loss trains alone (mer_lib.models.losses). No epoch cap is given: 200 here.
    "mocanu": {"lr": 1e-4, "epochs": 200, "batch_size": 16, "schedule": "constant", "early_stopping": 20,
               "monitor": "accuracy", "validation": "actors", "metric_loss": "alone"},
}

# The choices of each setting that has a fixed set: TrainConfig checks them, `mer train` offers them.
CHOICES = {"model": MODELS, "modalities": MODALITIES, "loss": LOSS_KINDS, "metric_loss": METRIC_LOSSES,
           "train_noise": MODALITIES, "frontend": FRONTENDS, "schedule": SCHEDULES, "validation": VALIDATIONS,
           "monitor": MONITORS}

# Bounds of the numeric settings (mer_lib.errors.check_number), checked when a TrainConfig is made, so a
# value that cannot work is an error naming it before any data is read or any file written.
_AT_LEAST_ONE = {"integer": True, "low": 1}
LIMITS = {**dict.fromkeys(("d_model", "heads", "layers", "d_ff", "epochs", "steps", "batch_size",
                           "checkpoint_every", "early_stopping"), _AT_LEAST_ONE),
          "patience": {"integer": True, "low": 0}, "seed": {"integer": True, "low": 0}, "lr": {"above": 0},
          "weight_decay": {"low": 0}, "mixup": {"low": 0}, "warp": {"low": 0, "high": 0.5}, "noise_snr": {},
          "label_smoothing": {"low": 0, "high": 0.5},
          "dropout": {"low": 0, "high": 1}}


def flag(default, help: str):
    """A TrainConfig field that `mer train` offers as a flag, with its help text."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that decides a training run; the defaults are those of the default preset ("fast").

    Fields made with `flag` are `mer train` flags: --d-model for d_model, --no-pe for a switch that is
    on by default, --spec-augment for one that is off."""

    model: str = flag("mater", "a network, or a rung of the baseline ladder (majority, logreg, svm)")
    modalities: str = flag("av", "audio, video or both")
    pe: bool = flag(True, "ablation: no positional encoding")
    mhsa: bool = flag(True, "ablation: no multi-head self-attention (cross_attention: no temporal attention AT, VT)")
    fusion: bool = flag(True, "cross_attention: concatenate instead of the cross-modal fusion (eqs. 7-10)")
    vs: bool = flag(True, "cross_attention on cached maps: no visual spatial attention (eqs. 1-3)")
    vc: bool = flag(True, "cross_attention on cached maps: no visual channel-wise attention (eqs. 4-5)")
    loss: str = flag("softmax", "cross_attention: cross-entropy, or the triplet or emotion metric loss "
                                "(Mocanu et al. eqs. 12-16)")
    metric_loss: str = flag("with_softmax", "triplet/emotion: the metric loss alone, classes by the nearest class "
                                            "centre (Mocanu et al.; preset mocanu), or added to the cross-entropy")
    standardize: bool = True  # z-score each embedding dimension with the training clips' statistics
    train_noise: str | None = flag(None, "retrain with noisy windows in this modality (MATER Algorithm 1)")
    frontend: str = flag("linear", "mater's audio windows: stored embeddings (linear) or a CNN learned on "
                                   "logmel_patches (conv)")
    spec_augment: bool = flag(False, "conv front-end: SpecAugment time and frequency masks on the training clips")
    noise_snr: float | None = flag(None, "conv front-end: additive mel-domain noise on the training clips, SNR "
                                         "from this to +20 dB")
    warp: float = flag(0.0, "conv front-end: speed and vocal-tract-length perturbation of the training clips, time "
                            "and mel axes scaled by factors in [1 - warp, 1 + warp] (0: off)")
    mixup: float = flag(0.0, "mixup Beta(alpha, alpha) on the training clips (0: off)")
    label_smoothing: float = flag(0.0, "train the cross-entropy against (1 - s) x one-hot + s x uniform targets "
                                       "(Szegedy et al. 2016; 0: off)")
    d_model: int = flag(512, "model width (MATER paper: 512)")
    heads: int = flag(8, "attention heads (MATER paper: 8)")
    layers: int = flag(6, "MATER encoder layers (paper: 6), or LSTM layers")
    d_ff: int = flag(2048, "feed-forward width (MATER paper: 2048)")
    dropout: float = 0.1
    lr: float = flag(1e-4, "learning rate")
    epochs: int = flag(60, "at most this many epochs")
    steps: int | None = flag(None, "about this many optimizer steps, whatever the fold's size: fewer epochs on more "
                                   "clips (at most --epochs)")
    batch_size: int = flag(64, "clips per batch")
    patience: int = 5  # ReduceLROnPlateau on the validation loss
    lr_factor: float = 0.1
    early_stopping: int | None = 15  # stop after this many epochs without a better monitored validation measure
    monitor: str = "loss"  # the validation measure that keeps an epoch and stops early: "loss" (lowest) or "accuracy"
    schedule: str = flag("plateau", "learning-rate schedule: reduce on the validation loss's plateau, one-cycle, "
                                    "or constant")
    weight_decay: float = flag(0.0, "AdamW's decoupled weight decay (0: Adam)")
    validation: str = flag("actors", "actors: keep the epoch with the best validation loss on held-out actors; "
                                     "none: train on every non-test actor for a fixed number of epochs")
    val_fraction: float = 0.15  # share of training clips held out when no validation fold is left
    seed: int = flag(0, "the seed of initialisation, shuffling and dropout")
    device: str = flag("auto", "auto, cpu, cuda or cuda:N")
    checkpoint_every: int = flag(1, "epochs between resumable checkpoints (big models write big files)")
    frame_size: int | None = None  # cross_attention on cached backbone maps: set from the video store
    map_channels: int | None = None  # m of those maps (the store holds m x h x w values per snippet)
    preset: str | None = None  # the preset the values came from (a label; not a setting the model depends on)

    def __post_init__(self):
        check_modalities(self.modalities)
        if self.train_noise is not None:
            check_modalities(self.train_noise)
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise MerError(f"unknown {name.replace('_', ' ')} {value!r} (choose {', '.join(choices)})")
        if self.loss != "softmax" and self.model != "cross_attention":
            raise MerError(f"the {self.loss} loss needs the fused embedding of --model cross_attention")
        if self.model == "jca" and self.modalities != "av":
            raise MerError("joint cross-attention fuses both modalities: use --modalities av")
        if self.train_noise is not None and self.model in LADDER:
            raise MerError(f"--train-noise retrains a network with noisy windows; --model {self.model} is "
                           f"fitted on clip-level features")
        augmented = self.spec_augment or self.warp or self.noise_snr is not None
        if (self.frontend == "conv" or augmented) and self.model != "mater":
            raise MerError("the learned log-mel front-end and its augmentation belong to --model mater")
        if self.validation == "none" and self.early_stopping:
            raise MerError("--validation none trains a fixed number of epochs: no early stopping (it reads the "
                           "validation actors; the plateau schedule reads the training loss instead)")
        if self.mixup and self.loss != "softmax":
            raise MerError(f"mixup gives soft labels, which the {self.loss} loss cannot take")
        for name, limits in LIMITS.items():
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), **limits)
        if self.model == "mater" and self.mhsa and self.d_model % self.heads:
            raise MerError(f"d_model (--d-model {self.d_model}) must be a multiple of heads (--heads {self.heads}): "
                           f"MATER's attention heads split the model width")


def flags() -> list:
    """The TrainConfig fields `mer train` offers as flags (those made with `flag`), in field order."""
    return [f for f in fields(TrainConfig) if "help" in f.metadata]


def make_config(preset: str = DEFAULT_PRESET, **overrides) -> TrainConfig:
    """A TrainConfig from a preset (`PRESETS`) with `overrides` on top; None values are ignored."""
    if preset not in PRESETS:
        raise MerError(f"unknown preset {preset!r} (choose {' or '.join(PRESETS)})")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise MerError(f"unknown training settings: {', '.join(unknown)}")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**(PRESETS[preset] | chosen | {"preset": preset}))


def trained_settings(config: TrainConfig | dict) -> dict:
    """The settings a trained model depends on: all but the device, checkpoint spacing and preset name.

    A run folder's config.yaml and a checkpoint are reused only when these match the asked settings."""
    if isinstance(config, TrainConfig):
        values = asdict(config)
    else:  # a saved config (config.yaml, checkpoint): settings added since it was written take their defaults
        values = {f.name: config.get(f.name, f.default) for f in fields(TrainConfig)}
    return {k: v for k, v in values.items() if k not in ("device", "checkpoint_every", "preset")}


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """--preset and a flag for every TrainConfig field made with `flag`, its choices from CHOICES.

    Every field's flag defaults to None, which keeps the preset's value (`make_config`): --d-model
    for d_model, --no-pe for a switch on by default, --spec-augment for one off by default."""
    parser.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                        help=f"paper: the MATER papers; fast: the course default; audio: the learned log-mel recipe; "
                             f"mocanu: the cross-modal model's protocol (Mocanu et al. section 4.2); "
                             f"default {DEFAULT_PRESET}")
    types = typing.get_type_hints(TrainConfig)
    for f in flags():
        dashed = f.name.replace("_", "-")
        if types[f.name] is bool:
            parser.add_argument(f"--no-{dashed}" if f.default else f"--{dashed}", dest=f.name, action="store_const",
                                const=not f.default, default=None, help=f.metadata["help"])
            continue
        kind = next((t for t in (int, float) if t in typing.get_args(types[f.name]) + (types[f.name],)), str)
        if any(f.name in values for values in PRESETS.values()):
            default = " (default: the preset's)"
        else:
            default = "" if f.default is None else f" (default {f.default})"
        parser.add_argument(f"--{dashed}", type=kind, choices=CHOICES.get(f.name), default=None,
                            help=f.metadata["help"] + default)


def flag_settings(args: argparse.Namespace) -> dict:
    """The TrainConfig fields parsed by `add_train_flags` (None: the preset's value)."""
    return {f.name: getattr(args, f.name) for f in flags()}


def config_from_flags(argv: list[str]) -> TrainConfig:
    """The TrainConfig that `mer train` builds from these arguments (others, such as --audio, are ignored)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_train_flags(parser)
    args, _ = parser.parse_known_args(argv)
    return make_config(args.preset, **flag_settings(args))
