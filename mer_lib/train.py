"""`mer train`: train a model on stored window embeddings, fold by fold; the training loop and the
cross-validation.

Models: MATER and the LSTM baseline (late fusion), the cross-modal attention model of Mocanu et al.
(with softmax, triplet or emotion metric loss; on window embeddings or cached backbone maps) and
joint cross-attention. All read the same stores, folds and run-folder layout, so their results sit
side by side in `mer report`, with the baseline ladder (majority, logreg, svm; mer_lib.ladder), which
each fold fits on clip-level features instead of training (no history.csv or checkpoints). Each
network is built by mer_lib.models.standardized.build_model (per-dimension z-scores with the training
clips' statistics in front of it); `train_noise` retrains with MATER's Algorithm 1.

Around this module: the settings, their presets and the evidence for the default one are in
mer_lib.config; a run's clips are loaded by mer_lib.features.corpus (tensors: mer_lib.data.clips);
checkpoint files are written and read by mer_lib.checkpoints; metrics.json is scored by
mer_lib.metrics; the papers' grids of runs are mer_lib.grids.

Inside each outer fold the next fold's actors are the validation set (mer_lib.data.folds.split); with
only 2 folds a stratified share of the training clips is held out instead. The weights with the
lowest validation loss (highest accuracy with ``monitor="accuracy"``) are the fold's model; with
``validation="none"`` the last epoch is.

The loop (`train_fold`) fits a `Task`, a loss and a score: classification (cross-entropy, accuracy) for
every run of `mer train`, and the valence-arousal regression of mer_lib.dimensional (1 - CCC, CCC).

Embeddings are small, so every tensor stays in memory (on the device) and batches are taken by
index: no DataLoader, no per-clip Python work. Every epoch ends with an atomic checkpoint
(model, optimiser and scheduler state, epoch, best validation loss); an interrupted run resumes
from it and ends where an uninterrupted run would, and a finished fold is not trained again.

Run folder (DESIGN.md, "Data flow"): config.yaml, metrics.json, predictions.csv, history.csv,
checkpoints/fold<k>.pt, and folds/fold<k>.json (each fold's test probabilities and history).
config.yaml also records what loading a fold's model needs (`run_inputs`), so a run folder copied
elsewhere loads and predicts without the data folder; mer_lib.run_folder reads a finished run back.

A cross-validation is planned here (`plan_run`: clips loaded, settings checked, folds split), done as
one task per (fold, seed) (`run_fold`: train or resume, test, write the fold's results) and assembled
from the results files (`assemble`). The tasks run here one after another, or as Dask tasks on a
cluster (mer_lib.distributed), the same code either way; a rerun does only the tasks without results,
and a grid (mer_lib.grids) submits the tasks of all its runs at once.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from mer_lib import artifacts, checkpoints, distributed, ladder
from mer_lib.config import DEFAULT_PRESET, TrainConfig, make_config, trained_settings
from mer_lib.data import folds as folds_mod
from mer_lib.data import manifest as mf
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.features import store as store_mod
from mer_lib.features.corpus import Corpus, load_corpus
from mer_lib.metrics import seed_summary, summarize
from mer_lib.models import augment, registry
from mer_lib.models import noise as window_noise
from mer_lib.models.losses import make_loss
from mer_lib.models.outputs import ModelOutput, concatenate
from mer_lib.models.registry import centres_readout
from mer_lib.models.standardized import build_model


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; MerError for an unknown or unavailable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MerError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MerError(f"device {name!r} requested but CUDA is not available (use --device auto or cpu)")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and dropout: a resumed run replays the same epochs."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels on CPU, where they cost nothing; left as is on GPUs."""
    if device.type != "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@dataclass(frozen=True)
class Task:
    """What the training loop fits and how it judges a model: `CLASSIFICATION` unless told otherwise
    (mer_lib.dimensional.VALENCE_AROUSAL regresses valence and arousal through the same loop).

    `loss(output, targets)` is a batch's loss against its `ClipData.labels` (soft labels after mixup): what
    training minimises (classification can train a metric loss instead, mer_lib.models.losses.make_loss)
    and validation reports as val_loss. `score(output, targets)` judges a whole set's predictions, higher
    is better: the history's train_<score_name> (the epoch's training batches) and val_<score_name>, and
    what ``monitor="accuracy"`` keeps the best epoch by.
    """

    loss: Callable[[ModelOutput, Tensor], Tensor]
    score: Callable[[ModelOutput, Tensor], float]
    score_name: str


def accuracy(output: ModelOutput, labels: Tensor) -> float:
    """The share of clips whose fused prediction is their label."""
    return (output.logits.argmax(1) == labels).sum().item() / len(labels)


CLASSIFICATION = Task(lambda output, labels: F.cross_entropy(output.logits, labels), accuracy, "accuracy")


def run_epoch(model: nn.Module, data: ClipData, optimizer: torch.optim.Optimizer, batch_size: int,
              loss_fn=None, noise: str | None = None, config: TrainConfig | None = None,
              scheduler=None, task: Task = CLASSIFICATION) -> tuple[float, float]:
    """One pass over `data` in shuffled batches; (mean loss, the task's score of the epoch's predictions).

    `loss_fn(output, labels)` defaults to the task's loss (classification: cross-entropy on the fused
    logits); with `noise` ("a", "v", "av") each batch first gets Algorithm 1's noisy windows (MATER
    journal section 5.2.1). `config` switches on the augmentations of the training clips
    (`augment_batch`); a per-batch `scheduler` (one-cycle) steps after every batch.
    """
    loss_fn = loss_fn or task.loss
    model.train()
    order = torch.randperm(len(data)).to(data.labels.device)
    total_loss = torch.zeros((), device=data.labels.device)
    outputs = []
    for index in order.split(batch_size):
        batch = data.take(index)
        if noise:
            batch = window_noise.algorithm1(batch, noise, space=window_noise.input_space(model))
        inputs, targets = augment_batch(batch, config)
        output = model(**inputs)
        loss = loss_fn(output, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.detach() * len(index)
        outputs.append(output)
    return total_loss.item() / len(data), task.score(concatenate(outputs), data.labels[order])


def augment_batch(batch: ClipData, config: TrainConfig | None) -> tuple[dict[str, Tensor | None], Tensor]:
    """The forward arguments and targets of a training batch after `config`'s augmentations
    (mer_lib.models.augment): speed and vocal-tract-length perturbation, mel-domain noise and SpecAugment
    on log-mel patches, then mixup (soft targets)."""
    inputs, targets = batch.inputs(), batch.labels
    if config is None:
        return inputs, targets
    if config.frontend == "conv" and inputs["audio"] is not None:
        if config.warp:
            inputs["audio"] = augment.warp(inputs["audio"], inputs["audio_mask"], config.warp)
        if config.noise_snr is not None:
            inputs["audio"] = augment.add_noise(inputs["audio"], inputs["audio_mask"], config.noise_snr)
        if config.spec_augment:
            inputs["audio"] = augment.spec_augment(inputs["audio"], inputs["audio_mask"])
    if config.mixup > 0:
        inputs, targets = augment.mixup(inputs, F.one_hot(targets, batch.n_classes).float(), config.mixup)
    return inputs, targets


@torch.no_grad()
def predict(model: nn.Module, data: ClipData, batch_size: int = 1024) -> ModelOutput:
    """The model's predictions (logits fused and per modality, embedding, valence-arousal) for every clip of
    `data`, in evaluation mode."""
    model.eval()
    return concatenate([model(**data.take(index).inputs()) for index in torch.arange(len(data)).split(batch_size)])


def evaluate(model: nn.Module, data: ClipData, task: Task = CLASSIFICATION) -> tuple[float, float]:
    """(loss, score) of the task on `data`: classification's cross-entropy and accuracy of the fused prediction."""
    output = predict(model, data)
    return task.loss(output, data.labels).item(), task.score(output, data.labels)


def _weights(model: nn.Module) -> dict[str, Tensor]:
    """A CPU copy of the model's weights (the best ones are kept this way)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def with_step_budget(config: TrainConfig, n_train: int) -> TrainConfig:
    """`config` with the epochs that make about `config.steps` optimizer steps on `n_train` clips (at most
    `config.epochs`); unchanged without a step budget. A fold with more training actors then costs what a
    smaller one does: 760 steps are 40 epochs on 600 clips and 18 on 1320 (RAVDESS, 22 actors)."""
    if config.steps is None:
        return config
    batches = math.ceil(n_train / config.batch_size)
    return replace(config, epochs=min(config.epochs, max(1, round(config.steps / batches))))


def train_fold(config: TrainConfig, train_data: ClipData, val_data: ClipData,
               checkpoint_path: str | Path | None = None, desc: str = "epochs",
               classes: tuple[str, ...] | None = None, task: Task = CLASSIFICATION,
               data: str | None = None) -> tuple[nn.Module, list[dict]]:
    """Train one model for `task`; returns it with the weights of the best validation epoch, and the
    per-epoch history.

    The best epoch has the lowest validation loss, or the highest validation score (classification: accuracy)
    with ``monitor="accuracy"`` (Mocanu et al.'s early stopping); early stopping counts the epochs since.

    With `checkpoint_path`, the state is saved atomically every `config.checkpoint_every` epochs; a
    rerun resumes from it (identically: each epoch reseeds its shuffling and dropout), and a finished
    fold is loaded instead of trained, unless it was trained on other data (`data`: the fingerprint of the
    clips, `Corpus.fingerprint`, recorded in the checkpoint). History rows: epoch, train_loss, train_<score>
    (train_accuracy), val_loss, val_<score>, lr. The metric losses need the emotion names (`classes`, in
    label order). With ``validation="none"`` there is no `val_data` (None): every epoch is trained and the
    last one is kept.
    A step budget (`config.steps`) sets the epochs from the number of training clips (`with_step_budget`).
    """
    select = config.validation == "actors"
    if len(train_data) == 0 or (select and (val_data is None or len(val_data) == 0)):
        raise MerError(f"training needs clips in both sets ({len(train_data)} training, "
                       f"{0 if val_data is None else len(val_data)} validation)")
    if config.loss != "softmax" and classes is None:
        raise MerError(f"the {config.loss} loss needs the class names (emotion polarities)")
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    config = with_step_budget(config, len(train_data))
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = build_model(config, train_data.n_classes, train_data.dims(), train_data.n_windows)
    if config.standardize:
        model.fit(train_data)
    model = model.to(device)
    loss_fn = None  # the task's
    if config.loss != "softmax" or config.label_smoothing:
        if task is not CLASSIFICATION:
            raise MerError("the metric losses and label smoothing train classifiers, not this task")
        loss_fn = make_loss(config.loss, classes, metric_loss=config.metric_loss,
                            label_smoothing=config.label_smoothing)
    checkpoint = checkpoints.resume(path, config, data)
    if checkpoint is not None and checkpoint["finished"]:
        model.load_state_dict(checkpoint["model"])
        return model, checkpoint["history"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config, math.ceil(len(train_data) / config.batch_size))
    state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
             "best_model": _weights(model)}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = {k: checkpoint[k] for k in state}
    train_data = train_data.to(device)
    val_data = val_data.to(device) if select else None
    per_batch = scheduler if config.schedule == "onecycle" else None
    with deterministic(device):
        bar = tqdm(range(state["epoch"], config.epochs), desc=desc, initial=state["epoch"], total=config.epochs,
                   leave=False, disable=None)
        for epoch in bar:
            if config.early_stopping and state["bad_epochs"] >= config.early_stopping:
                break
            torch.manual_seed(epoch_seed(config.seed, epoch))
            train_loss, train_score = run_epoch(model, train_data, optimizer, config.batch_size, loss_fn,
                                                config.train_noise, config, per_batch, task)
            if centres_readout(config):
                fit_class_centres(model, train_data)
            val_loss, val_score = evaluate(model, val_data, task) if select else (math.nan, math.nan)
            if config.schedule == "plateau":  # without validation actors it reads the training loss
                scheduler.step(val_loss if select else train_loss)
            state["history"].append({"epoch": epoch, "train_loss": train_loss, f"train_{task.score_name}": train_score,
                                     "val_loss": val_loss, f"val_{task.score_name}": val_score,
                                     "lr": optimizer.param_groups[0]["lr"]})
            monitored = "val_loss" if config.monitor == "loss" else f"val_{task.score_name}"
            if not select or _improved(state["history"], state["best_epoch"], monitored):  # none: the last kept
                state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0, best_model=_weights(model))
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            bar.set_postfix({"val_loss": f"{val_loss:.3f}", f"val_{task.score_name}": f"{val_score:.3f}"},
                            refresh=False)  # shown at the next tick
            if state["epoch"] % config.checkpoint_every == 0:
                checkpoints.save(path, config, False, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                 scheduler=scheduler.state_dict(), data=data, **state)
    model.load_state_dict(state["best_model"])
    checkpoints.save(path, config, True, model=state.pop("best_model"), data=data, **state)  # no optimiser
    return model, state["history"]


def _improved(history: list[dict], best_epoch: int, key: str) -> bool:
    """Whether the last epoch of `history` beats epoch `best_epoch` (-1: none yet) on validation measure
    `key`: a lower val_loss, or a higher score."""
    if best_epoch < 0:
        return True
    sign = 1.0 if key == "val_loss" else -1.0
    return sign * history[-1][key] < sign * history[best_epoch][key]


@torch.no_grad()
def fit_class_centres(model: nn.Module, data: ClipData, batch_size: int = 1024) -> None:
    """Set the class centres of a nearest-centre readout (CrossAttentionModel, readout "centres") from the
    embeddings of `data`, the training clips, in evaluation mode."""
    model.eval()
    embeddings = torch.cat([model(**data.take(index).inputs()).embedding
                            for index in torch.arange(len(data)).split(batch_size)])
    model.model.set_class_centres(embeddings, data.labels)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule: MATER's reduce-on-plateau (stepped per epoch), a one-cycle schedule (Smith
    and Topin 2019: warm-up to `lr`, cosine annealing; stepped per batch), or a constant rate (Mocanu et al.)."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", factor=config.lr_factor,
                                                      patience=config.patience)


# ---------------------------------------------------------------- cross-validation over stored embeddings


def parse_folds(folds: str | list[int], n_folds: int) -> list[int]:
    """"all", "0,3" or a list of fold numbers -> the fold numbers; MerError for folds that do not exist."""
    if isinstance(folds, str):
        if folds.strip() == "all":
            return list(range(n_folds))
        try:
            folds = [int(part) for part in folds.split(",")]
        except ValueError:
            raise MerError(f"bad folds {folds!r}: use all or comma-separated fold numbers such as 0,3") from None
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad or not folds:
        raise MerError(f"fold {bad[0] if bad else '(none)'} does not exist (folds 0..{n_folds - 1})")
    return sorted(set(folds))


def _holdout(index: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `index` into (train, validation), stratified by label where every class allows it."""
    try:
        train, val = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:  # a class with a single clip, or more classes than validation clips
        train, val = train_test_split(index, test_size=fraction, random_state=seed)
    return np.sort(train), np.sort(val)


def fold_indices(clips: pd.DataFrame, fold_table: pd.DataFrame, fold: int,
                 config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the (train, validation, test) clips of outer fold `fold` (subject-disjoint)."""
    train_actors, val_actors, test_actors = folds_mod.split(fold_table, fold)
    test = np.flatnonzero(clips["actor"].isin(test_actors))
    train = np.flatnonzero(clips["actor"].isin(train_actors))
    val = np.flatnonzero(clips["actor"].isin(val_actors))
    if config.validation == "none":  # the paper's reading: every actor but the test ones trains, fixed epochs
        return np.sort(np.concatenate([train, val])), np.array([], dtype=int), _nonempty(train, test, fold)
    if not val_actors:
        train, val = _holdout(train, clips["label"].to_numpy()[train], config.val_fraction, config.seed)
    if len(val) == 0:
        raise MerError(f"fold {fold}: no validation clip has embeddings")
    return train, val, _nonempty(train, test, fold)


def _nonempty(train: np.ndarray, test: np.ndarray, fold: int) -> np.ndarray:
    """`test` itself; MerError when the fold has no training or no test clip."""
    if len(test) == 0 or len(train) == 0:
        raise MerError(f"fold {fold}: {len(train)} training and {len(test)} test clips have embeddings; "
                       f"both sets need at least one")
    return test


def _write_config(out_dir: Path, config: TrainConfig, data_info: dict, folds: list[int],
                  seeds: list[int] | None = None, corpus: Corpus | None = None) -> None:
    """Write config.yaml, refusing a run folder that holds a run with other settings or data.

    With the `corpus`, it also records what loading a fold's model needs (`run_inputs`), so the run
    folder stands alone: copied elsewhere, without the data folder, its models load and predict."""
    path = out_dir / "config.yaml"
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        if trained_settings(old.get("train", {})) != trained_settings(config) or old.get("data") != data_info:
            raise MerError(f"{out_dir} holds a run with other settings (see its config.yaml); "
                           f"choose another --out or delete that folder")
    settings = {"train": asdict(config), "data": data_info, "folds": folds, "seeds": seeds or [config.seed]}
    settings |= {"inputs": run_inputs(config, corpus)} if corpus is not None else {}
    artifacts.write_text(path, yaml.safe_dump(settings, sort_keys=False))


def run_inputs(config: TrainConfig, corpus: Corpus) -> dict:
    """What a run's models were built for and fed: the class list, each modality's embedding size, the
    windows T, each store's provenance without per-clip entries (extractor, settings, weights sha256),
    and, for a network, its kind and full model config (mer_lib.models.registry)."""
    inputs = {"classes": list(corpus.classes), "dims": corpus.data.dims(), "n_windows": corpus.data.n_windows,
              "stores": {name: store_mod.settings(meta) for name, meta in corpus.metas.items()}}
    if config.model in registry.NETWORKS:
        model = registry.model_config(config, len(corpus.classes), inputs["dims"], inputs["n_windows"])
        inputs["model"] = {"kind": config.model, "config": asdict(model)}
    return inputs


def _columns(probabilities: np.ndarray, classes: tuple[str, ...], prefix: str = "p_") -> dict[str, np.ndarray]:
    """(N, classes) probabilities as predictions.csv columns <prefix><class>."""
    return {f"{prefix}{c}": p for c, p in zip(classes, probabilities.T)}


def _probabilities(output: ModelOutput, classes: tuple[str, ...]) -> pd.DataFrame:
    """Softmax probabilities as columns p_<class> (fused) and p_<m>_<class> (per modality)."""
    columns = _columns(output.logits.softmax(1).cpu().numpy(), classes)
    for m, logits in output.modality_logits.items():
        columns |= _columns(logits.softmax(1).cpu().numpy(), classes, f"p_{m}_")
    return pd.DataFrame(columns)


def _ladder_fold(model: str, corpus: Corpus, fit_rows: np.ndarray, test: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """Fit ladder rung `model` on the clips at `fit_rows` (the fold's training and validation actors);
    the p_<class> probabilities of its `test` clips and the hyperparameters the inner search chose."""
    fit_data = corpus.data.take(fit_rows)
    fitted = ladder.fit(model, ladder.clip_features(fit_data), fit_data.labels.numpy(),
                        corpus.clips["actor"].to_numpy()[fit_rows], len(corpus.classes))
    probabilities = fitted.probabilities(ladder.clip_features(corpus.data.take(test)))
    return pd.DataFrame(_columns(probabilities, corpus.classes)), fitted.chosen


def _prediction_table(corpus: Corpus, test: np.ndarray, fold: int, probabilities: pd.DataFrame) -> pd.DataFrame:
    """The `test` clips of `fold` with their probabilities and predicted emotion (argmax of p_<class>)."""
    fused = probabilities[[f"p_{c}" for c in corpus.classes]].to_numpy()
    rows = corpus.clips.iloc[test].reset_index(drop=True).assign(
        fold=fold, predicted=np.asarray(corpus.classes)[fused.argmax(1)])
    return pd.concat([rows, probabilities], axis=1)


def with_backbone_maps(config: TrainConfig, video_meta: dict) -> TrainConfig:
    """`config` with the frame size and channels of a cached backbone-map video store (unchanged otherwise)."""
    from mer_lib.features.backbone import map_settings

    maps = map_settings(video_meta)
    if not maps:
        return config
    if config.model != "cross_attention":
        raise MerError(f"{video_meta.get('name')} holds cached 3D-CNN feature maps: train them with --model "
                       f"cross_attention (its spatial and channel attention read them)")
    return replace(config, frame_size=maps["frame_size"], map_channels=maps["d_video"])


def cross_validate(data_dir: str | Path, config: TrainConfig, out_dir: str | Path, folds: str | list[int] = "all",
                   audio: str | None = None, video: str | None = None, window: float | None = None,
                   windows: int | None = None, layout: str = "fixed", seeds: list[int] | None = None,
                   scheduler=None) -> dict:
    """Subject-disjoint cross-validation of `config` on the stored embeddings under `data_dir`.

    Trains each requested outer fold (resuming or reusing its checkpoint), predicts its test actors'
    clips, and writes config.yaml, metrics.json, predictions.csv, history.csv and
    checkpoints/fold<k>.pt under `out_dir`. Returns the metrics (see `summarize`, plus config and data).
    A ladder model is fitted per fold instead (config, metrics with the `chosen` hyperparameters of
    each fold, predictions). With several `seeds` each fold trains once per seed
    (checkpoints/fold<k>-seed<s>.pt): predictions.csv holds the seeds' averaged probabilities (the
    ensemble, which the main metrics score), predictions_seeds.csv each seed's, and metrics.json
    "seeds" the mean and std over seeds of each seed's accuracy and UAR over folds. Each (fold, seed)
    is a task (`run_fold`), run here or on Dask `scheduler` (mer_lib.distributed); see `run_plans`.
    """
    with distributed.connect(scheduler) as client:
        plan = plan_run(data_dir, config, out_dir, folds, audio, video, window, windows, layout, seeds)
        return run_plans([plan], client)[0]


@dataclass
class FoldTask:
    """One (fold, seed) of a run: its settings (with the seed), clips and files; `run_fold` does it.

    A network trains to checkpoints/<name>.pt; networks and ladder fits alike write the test clips'
    probabilities, the history and the chosen hyperparameters to folds/<name>.json, whose presence
    (for the same test clips) means the task is done.
    """

    config: TrainConfig
    fold: int
    train: np.ndarray  # positions of the training, validation and test clips in the run's corpus
    val: np.ndarray
    test: np.ndarray
    run_dir: Path
    name: str  # fold<k>, or fold<k>-seed<s> with several seeds

    @property
    def result_path(self) -> Path:
        return self.run_dir / "folds" / f"{self.name}.json"


@dataclass
class RunPlan:
    """A run prepared here (config.yaml written, folds split): its clips and its (fold, seed) tasks."""

    config: TrainConfig
    corpus: Corpus
    source: tuple  # load_corpus's arguments, with which a Dask worker loads the same clips
    out_dir: Path
    folds: list[int]
    seeds: list[int]
    data_info: dict
    tasks: list[FoldTask]

    def todo(self) -> list[FoldTask]:
        """The tasks without results for their test clips (results of other clips are stale: done again)."""
        return [task for task in self.tasks if _read_result(task, self.corpus) is None]


def plan_run(data_dir: str | Path, config: TrainConfig, out_dir: str | Path, folds: str | list[int] = "all",
             audio: str | None = None, video: str | None = None, window: float | None = None,
             windows: int | None = None, layout: str = "fixed", seeds: list[int] | None = None,
             corpora: dict | None = None) -> RunPlan:
    """Load the run's clips, check its settings against `out_dir` (writing config.yaml) and split its folds
    into (fold, seed) tasks (a ladder fit: one per fold). `corpora` shares loaded clips between the runs of a grid."""
    seeds = list(seeds) if seeds else [config.seed]
    config = replace(config, seed=seeds[0])
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    source = (str(data_dir), config.modalities, audio, video, window, windows, layout)
    corpora = {} if corpora is None else corpora
    if source not in corpora:
        corpora[source] = load_corpus(*source)
    corpus = corpora[source]
    config = with_backbone_maps(config, corpus.metas.get("video", {}))
    fold_table = mf.load_folds(data_dir)
    chosen = parse_folds(folds, int(fold_table["fold"].max()) + 1)
    data_info = {"data_dir": str(data_dir.resolve()), "dataset": corpus.dataset, "stores": corpus.stores}
    _write_config(out_dir, config, data_info, chosen, seeds, corpus)
    tasks = []
    for fold in chosen:
        split = fold_indices(corpus.clips, fold_table, fold, config)
        for seed in seeds[:1] if config.model in ladder.LADDER else seeds:
            name = Path(checkpoints.checkpoint_name(fold, seed, seeds)).stem
            tasks.append(FoldTask(replace(config, seed=seed), fold, *split, out_dir, name))
    return RunPlan(config, corpus, source, out_dir, chosen, seeds, data_info, tasks)


def run_fold(task: FoldTask, corpus: Corpus) -> None:
    """Train (or resume) and test one (fold, seed) on `corpus`, here or on a Dask worker, and write its
    results file (FoldTask); a ladder model is fitted on the training and validation actors instead."""
    if task.config.model in ladder.LADDER:
        probabilities, chosen = _ladder_fold(task.config.model, corpus, np.concatenate([task.train, task.val]),
                                             task.test)
        history = []
    else:
        model, history = train_fold(task.config, corpus.data.take(task.train), corpus.data.take(task.val),
                                    task.run_dir / "checkpoints" / f"{task.name}.pt",
                                    desc=f"fold {task.fold} seed {task.config.seed}", classes=corpus.classes,
                                    data=corpus.fingerprint)
        output = predict(model, corpus.data.take(task.test).to(next(model.parameters()).device))
        probabilities, chosen = _probabilities(output, corpus.classes), None
    result = {"ids": corpus.clips["id"].iloc[task.test].tolist(), "columns": list(probabilities.columns),
              "dtype": str(probabilities.to_numpy().dtype), "probabilities": probabilities.to_numpy().tolist(),
              "history": history, "chosen": chosen, "revision": checkpoints.MODEL_REVISION,
              "data": corpus.fingerprint}
    artifacts.write_text(task.result_path, json.dumps(result, default=str))  # column and key order kept


def outdated_result(result: dict, model: str, data: str | None = None) -> bool:
    """Whether a fold's results file holds a network's predictions of an older model revision
    (mer_lib.checkpoints), which are not what the code trains now (a ladder fit never is), or results of
    other clips or embeddings than those of fingerprint `data` (Corpus.fingerprint; results written before
    fingerprints were recorded are taken)."""
    return checkpoints.other_data(result.get("data"), data) or (
        model not in ladder.LADDER and result.get("revision") != checkpoints.MODEL_REVISION)


def _read_result(task: FoldTask, corpus: Corpus) -> dict | None:
    """The task's results (probabilities as a table of the dtype they were predicted in), or None when it
    has none for its test clips, or a network's of an older model revision (mer_lib.checkpoints), or of
    other data (`outdated_result`)."""
    if not task.result_path.is_file():
        return None
    result = artifacts.read_json(task.result_path)
    if result["ids"] != corpus.clips["id"].iloc[task.test].tolist():
        return None
    if outdated_result(result, task.config.model, corpus.fingerprint):
        return None
    return result | {"probabilities": pd.DataFrame(result["probabilities"], columns=result["columns"],
                                                   dtype=result["dtype"])}


def run_plans(plans: list[RunPlan], client=None) -> list[dict]:
    """Do the unfinished tasks of every plan (here in order, or as Dask tasks on `client`'s workers) and
    assemble each run as soon as its last task is done; the runs' metrics.

    On Dask each worker loads a run's clips itself (one load per distinct store set, redone by Dask if
    its worker is lost) and a task asks for a GPU as its device says (distributed.device_resources).
    """
    todo = [(plan, task) for plan in plans for task in plan.todo()]
    if client is None:
        jobs, resources = [(task, plan.corpus) for plan, task in todo], None
    else:
        jobs = [(task, client.submit(load_corpus, *plan.source, pure=True)) for plan, task in todo]
        needs = {device: distributed.device_resources(client, device) for device in {t.config.device for _, t in todo}}
        resources = [needs[task.config.device] for _, task in todo]
    left = {id(plan): 0 for plan in plans}
    for plan, _ in todo:
        left[id(plan)] += 1
    metrics = {id(plan): assemble(plan) for plan in plans if not left[id(plan)]}
    finished = distributed.run(client, run_fold, jobs, resources)
    for position in tqdm(finished, total=len(todo), desc="(fold, seed) tasks", disable=None):
        plan = todo[position][0]
        left[id(plan)] -= 1
        if not left[id(plan)]:
            metrics[id(plan)] = assemble(plan)
    return [metrics[id(plan)] for plan in plans]


def assemble(plan: RunPlan) -> dict:
    """Write predictions.csv, history.csv, metrics.json (and predictions_seeds.csv) of a run whose tasks
    are all done, from their results files; its metrics."""
    corpus, config = plan.corpus, plan.config
    predictions, histories, hyperparameters, per_seed = [], [], [], []
    for fold in plan.folds:
        tasks = [task for task in plan.tasks if task.fold == fold]
        results = [_read_result(task, corpus) for task in tasks]
        for task, result in zip(tasks, results):
            if config.model in ladder.LADDER:  # one fit per fold, no history
                hyperparameters.append(result["chosen"])
            else:
                histories.append(pd.DataFrame(result["history"]).assign(fold=fold, seed=task.config.seed))
                per_seed.append(_prediction_table(corpus, task.test, fold, result["probabilities"])
                                .assign(seed=task.config.seed))
        probabilities = sum(r["probabilities"] for r in results) / len(results)  # the ensemble over seeds
        predictions.append(_prediction_table(corpus, tasks[0].test, fold, probabilities))
    predictions = pd.concat(predictions, ignore_index=True)
    first = ["id", "fold", "actor", "emotion", "label", "predicted"]
    out_dir = plan.out_dir
    artifacts.write_csv(out_dir / "predictions.csv", predictions[first + [c for c in predictions if c not in first]])
    if histories:
        history = pd.concat(histories, ignore_index=True)
        order = ["fold", "seed"] + [c for c in history if c not in ("fold", "seed")]
        artifacts.write_csv(out_dir / "history.csv", history[order])
    metrics = summarize(predictions, corpus.classes, config.modalities) | {"config": asdict(config),
                                                                           "data": plan.data_info}
    metrics |= {"n_clips_without_windows": len(corpus.without_windows), "clips_without_windows": corpus.without_windows}
    metrics |= {"chosen": hyperparameters} if hyperparameters else {}
    if len(plan.seeds) > 1 and per_seed:
        per_seed = pd.concat(per_seed, ignore_index=True)
        artifacts.write_csv(out_dir / "predictions_seeds.csv", per_seed)
        metrics["seeds"] = seed_summary(per_seed, corpus.classes, config.modalities)
    artifacts.write_json(out_dir / "metrics.json", metrics)
    return metrics


def run(data_dir: str | Path, out: str | Path, audio: str | None = None, video: str | None = None,
        window: float | None = None, windows: int | None = None, preset: str = DEFAULT_PRESET, folds: str = "all",
        layout: str = "fixed", seeds: list[int] | None = None, scheduler=None, **settings) -> dict:
    """The `mer train` command: a config from the preset and `settings` (TrainConfig fields; None
    keeps the preset's value), cross-validated over `folds` (each with every seed of `seeds`; here or
    on Dask `scheduler`), the result printed."""
    config = make_config(preset, **settings)
    distributed.check(scheduler)
    if config.model in ladder.LADDER:
        print(f"fitting {config.model} ({config.modalities}) on clip-level features, each fold's "
              f"hyperparameters chosen on its training actors")
    else:
        where = resolve_device(config.device) if scheduler is None else distributed.describe(scheduler)
        print(f"training {config.model} ({config.modalities}, PE {'on' if config.pe else 'off'}, "
              f"{'attention' if config.mhsa else 'no attention'}, loss {config.loss}, preset {preset}, "
              f"validation {config.validation}) on {where}")
    metrics = cross_validate(data_dir, config, out, folds, audio, video, window, windows, layout, seeds, scheduler)
    print(f"accuracy {metrics['accuracy_mean']:.3f} +- {metrics['accuracy_std']:.3f}, "
          f"UAR {metrics['uar_mean']:.3f} +- {metrics['uar_std']:.3f} over folds "
          f"{', '.join(map(str, metrics['folds']))} ({metrics['n_clips']} test clips); wrote {out}")
    if "seeds" in metrics:
        by_seed = metrics["seeds"]
        print(f"that is the ensemble of seeds {', '.join(map(str, by_seed['seeds']))}; one seed alone: accuracy "
              f"{by_seed['accuracy_mean']:.3f} +- {by_seed['accuracy_std_over_seeds']:.3f} over seeds")
    return metrics
