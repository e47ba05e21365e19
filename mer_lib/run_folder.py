"""A finished `mer train` run folder, read back: its settings, what its models were fed, each fold's model.

Everything a run folder needs to be used after training lives here, apart from the training itself
(mer_lib.train writes the folder): config.yaml (`read_run_config`) with its record of the classes,
embedding sizes, windows and stores the models were trained on (`recorded_inputs`, `store_meta`), the
fold checkpoints as models (`load_fold_model`, `fold_models`), and the whole run with its clips and each
fold's test actors (`load_trained`, for the analyses and notebooks). A run folder copied to another
machine loads without its data folder: the record in config.yaml sizes the models.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from torch import nn

from mer_lib import artifacts, checkpoints, ladder
from mer_lib.config import TrainConfig
from mer_lib.data import manifest as mf
from mer_lib.data.clips import ClipData
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError
from mer_lib.features import store as store_mod
from mer_lib.features.corpus import Corpus, load_corpus
from mer_lib.models.standardized import Standardized, build_model
from mer_lib.train import fold_indices, outdated_result, resolve_device


def recorded_inputs(run_dir: str | Path) -> dict:
    """The inputs record of a run folder's config.yaml (`mer_lib.train.run_inputs`); MerError for a run written before
    runs recorded it, saying how to add it."""
    saved = read_run_config(run_dir)
    if "inputs" not in saved:
        raise MerError(f"{run_dir} was trained before run folders recorded their inputs: load it beside its data "
                       f"folder, or rerun its `mer train` command with --out {run_dir} (finished folds are reused; "
                       f"config.yaml gains the record)")
    return saved["inputs"]


def store_meta(run_config: dict, modality: str) -> dict:
    """The provenance of the run's `modality` ("audio", "video") store: from the run folder's record, or,
    for a run written before it, from the data folder's embeddings/<store>.json."""
    recorded = run_config.get("inputs", {}).get("stores", {})
    if modality in recorded:
        return recorded[modality]
    name = run_config["data"]["stores"][modality]
    path = Path(run_config["data"]["data_dir"]) / "embeddings" / f"{name}.json"
    if not path.is_file():
        raise MerError(f"{path} is missing: the run's embedding store has no provenance to extract with")
    return artifacts.read_json(path) | {"name": name}


def load_fold_model(checkpoint_path: str | Path, n_classes: int | None = None, dims: dict[str, int] | None = None,
                    n_windows: int | None = None, device: str = "cpu") -> Standardized:
    """The trained model of a finished fold checkpoint (RUN/checkpoints/fold<k>.pt), in evaluation mode.

    Sized to the given classes, embeddings and windows, or, when they are not given, to those the run
    folder's config.yaml records (`recorded_inputs`): the checkpoint and its run folder are then all it needs."""
    path = Path(checkpoint_path)
    if None in (n_classes, dims, n_windows):
        inputs = recorded_inputs(path.parent.parent)
        n_classes, dims, n_windows = len(inputs["classes"]), inputs["dims"], inputs["n_windows"]
    if not path.is_file():
        raise MerError(f"{path} does not exist: train the run first (mer train ... --out {path.parent.parent})")
    checkpoint = checkpoints.read(path)
    if not checkpoint.get("finished"):
        raise MerError(f"{path} belongs to an unfinished fold: rerun its `mer train` command to finish it")
    config = TrainConfig(**checkpoint["config"])
    model = build_model(config, n_classes, dims, n_windows)
    model.load_state_dict(checkpoint["model"])
    return model.to(resolve_device(device)).eval()


@dataclass
class TrainedRun:
    """A finished run folder, loaded: its settings, clips, and each fold's model with its test clips."""

    config: TrainConfig
    corpus: Corpus
    models: dict[int, nn.Module]
    tests: dict[int, np.ndarray]  # fold -> positions of its test clips in corpus

    def test_data(self, fold: int) -> ClipData:
        """The test clips of `fold` (the actors its model never saw)."""
        return self.corpus.data.take(self.tests[fold])

    def examples(self, fold: int, n: int = 3) -> tuple[ClipData, list[str]]:
        """The first test clip of each of `n` emotions of `fold`, and their emotions (for attention plots)."""
        clips = self.corpus.clips.iloc[self.tests[fold]].reset_index(drop=True)
        first = clips.drop_duplicates("emotion").index[:n]
        return self.test_data(fold).take(np.array(first)), clips.loc[first, "emotion"].tolist()


def recorded_seeds(saved: dict) -> list[int]:
    """The seeds a run's config.yaml (`read_run_config`) records; one, its training seed, before seeds existed."""
    return saved.get("seeds") or [saved["train"].get("seed", 0)]


def outdated(run_dir: str | Path) -> bool:
    """Whether a (fold, seed) result of the run in `run_dir` (if any) is of an older model revision or of
    other data than its stores now hold (`train.outdated_result`); results files of other seeds left in its
    folds/ are not its own."""
    if not (Path(run_dir) / "config.yaml").is_file():
        return False
    saved = read_run_config(run_dir)
    if "train" not in saved:  # `mer ensemble`: trains nothing, its members are runs of their own
        return False
    seeds = recorded_seeds(saved)
    names = {Path(checkpoints.checkpoint_name(fold, seed, seeds)).stem for fold in saved["folds"] for seed in seeds}
    results = [artifacts.read_json(p) for name in names if (p := Path(run_dir) / "folds" / f"{name}.json").is_file()]
    data = run_corpus(saved).fingerprint if any("data" in result for result in results) else None
    return any(outdated_result(result, saved["train"]["model"], data) for result in results)


def run_corpus(saved: dict, data_dir: str | Path | None = None) -> Corpus:
    """The clips of a run's stores (`saved`: its config.yaml) in its data folder or in `data_dir`."""
    data_dir = saved["data"]["data_dir"] if data_dir is None else data_dir
    modalities = saved["train"]["modalities"]
    stores = {m: store_mod.parse_store_name(saved["data"]["stores"][MODALITY_NAMES[m]]) for m in modalities}
    layout = next(iter(stores.values()))
    return load_corpus(data_dir, modalities, stores.get("a", {}).get("extractor"),
                       stores.get("v", {}).get("extractor"), layout["window"], layout["count"], layout["layout"])


def read_run_config(run_dir: str | Path) -> dict:
    """config.yaml of a run folder: "train" (settings), "data" (data folder, dataset, stores), "folds"."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise MerError(f"{run_dir} has no config.yaml: not a `mer train` run folder")
    return yaml.safe_load(path.read_text())


def fold_models(run_dir: str | Path, n_classes: int | None = None, dims: dict[str, int] | None = None,
                n_windows: int | None = None, device: str = "cpu") -> dict[int, Standardized]:
    """Every fold model of a finished run, by fold, sized to the given classes, embeddings and windows
    (by default those the run folder records: see `load_fold_model`).

    A run trained with several seeds gives each fold's first-seed model (analyses look inside one model)."""
    saved = read_run_config(run_dir)
    if saved["train"]["model"] in ladder.LADDER:
        raise MerError(f"{run_dir} is a {saved['train']['model']} baseline run: it keeps predictions, not models")
    seeds = recorded_seeds(saved)
    folder = Path(run_dir) / "checkpoints"
    return {fold: load_fold_model(folder / checkpoints.checkpoint_name(fold, seeds[0], seeds), n_classes, dims,
                                  n_windows, device) for fold in saved["folds"]}


def load_trained(run_dir: str | Path, device: str = "cpu", data_dir: str | Path | None = None) -> TrainedRun:
    """Load a finished `mer train` run folder: the same clips and stores of `data_dir` (default: the data
    folder it was trained on), every fold model."""
    saved = read_run_config(run_dir)
    data_dir = saved["data"]["data_dir"] if data_dir is None else data_dir
    config, corpus = TrainConfig(**saved["train"]), run_corpus(saved, data_dir)
    fold_table = mf.load_folds(data_dir)
    models = fold_models(run_dir, len(corpus.classes), corpus.data.dims(), corpus.data.n_windows, device)
    tests = {fold: fold_indices(corpus.clips, fold_table, fold, config)[2] for fold in models}
    return TrainedRun(config, corpus, models, tests)
