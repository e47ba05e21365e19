"""`mer predict VIDEO --run RUN_DIR`: a trained run's emotion probabilities for a new recording.

The recording goes through the run's own extractors and window layout (read from the provenance of
the embedding stores the run was trained on: window length, count and placement, e.g. over the
speech for the voiced layout), then through every fold's model; the fold models'
probabilities are averaged (each was trained on other actors, so together they are the run's best
guess for an unseen person). Besides the clip's fused distribution, the prediction after the first
t windows, t = 1..T, shows how the decision builds up over time (MATER journal section 6).

A modality with nothing in it is masked, whatever the reason: no stream of it in the file, silent
audio, no face in any frame or window, a recording shorter than half a window. Late-fusion models
then answer from the other modality, and say so; with nothing left, `mer predict` says why instead
of answering.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mer_lib import artifacts, media, run_folder
from mer_lib.analysis.temporal import first_windows
from mer_lib.data import manifest as mf
from mer_lib.data.clips import ClipData
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import EmptyInput, MerError
from mer_lib.features import extract as ex


@dataclass
class Prediction:
    """Probabilities for one recording: ``fused`` (C,), ``incremental`` (T, C) after the first t windows."""

    classes: tuple[str, ...]
    fused: np.ndarray
    incremental: np.ndarray
    window: float
    modalities: str  # the modalities the recording had

    def table(self) -> pd.DataFrame:
        """Rows "after t windows (s)" and "clip", columns the classes."""
        index = [f"after {t} ({t * self.window:g} s)" for t in range(1, len(self.incremental) + 1)]
        return pd.DataFrame(np.vstack([self.incremental, self.fused]), index=index + ["clip"],
                            columns=list(self.classes)).round(3)

    @property
    def emotion(self) -> str:
        return self.classes[int(self.fused.argmax())]


def extract_config(run_config: dict, modality: str) -> tuple[ex.ExtractConfig, int]:
    """The ExtractConfig the run's `modality` store was built with and its embedding size (its provenance,
    as the run folder records it: mer_lib.run_folder.store_meta)."""
    meta = run_folder.store_meta(run_config, modality)
    if "backbone" in meta:
        raise MerError(f"the run was trained on cached backbone features ({meta['name']}); `mer predict` "
                       f"takes runs on window embeddings (mer extract)")
    return ex.ExtractConfig(**{f.name: meta[f.name] for f in fields(ex.ExtractConfig) if f.name in meta}), meta["dim"]


def _windows(clip: dict, config: ex.ExtractConfig, modality: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """The recording's windows of one modality (as `mer extract` makes them); EmptyInput when they hold nothing."""
    X, mask, notes = ex.embedder(config.modality)(clip, config)
    if not mask.any():
        raise EmptyInput("no face in any window" if modality == "v" else
                         f"no audio window (the recording lasts {notes['duration']:.2f} s; a window of "
                         f"{config.window:g} s needs half of it)")
    return X, mask, notes


def check_weights(config: ex.ExtractConfig, name: str) -> ex.ExtractConfig:
    """`config` with its extractor built; MerError when the weights here are not those the run's store used."""
    current = ex.with_extractor(config)
    if config.weights_sha256 not in (None, current.weights_sha256):
        raise MerError(f"the run's {name} embeddings were made with other {config.extractor} weights (sha256 "
                       f"{config.weights_sha256[:12]}..., here {str(current.weights_sha256)[:12]}...): use those")
    return current


def embed_recording(path: str | Path, run_config: dict, n_classes: int) -> tuple[ClipData, str, float]:
    """The recording's windows for the run's modalities as a one-clip ClipData; (data, present, window).

    A modality with nothing in it (see the module docstring) is masked, with a note saying why;
    MerError naming the file when no modality is left.
    """
    path = Path(path)
    info = media.probe(path)
    clip = {"id": path.stem, "audio_path": str(path), "video_path": str(path)}
    has = {"a": info.has_audio, "v": info.has_video}
    arrays, present, window, absent = {}, "", None, {}
    for m in run_config["train"]["modalities"]:
        name = MODALITY_NAMES[m]
        config, dim = extract_config(run_config, name)
        if config.extractor == "openface":
            raise MerError("the run used RAVDESS's OpenFace CSVs, which a new recording does not have")
        try:
            if not has[m]:
                raise EmptyInput(f"no {name} stream")
            X, mask, notes = _windows(clip, check_weights(config, name), m)
            window = notes["ends"][0] - notes["starts"][0]  # the clip layout's window is the recording
            present += m
        except EmptyInput as nothing:
            absent[m] = str(nothing)
            X, mask = np.zeros((config.count, dim), np.float32), np.zeros(config.count, bool)
        arrays[name], arrays[f"{name}_mask"] = X[None], mask[None]
    if not present:
        raise MerError(f"{path}: nothing to go on for this run: {'; '.join(absent.values())}")
    for reason in absent.values():
        print(f"note: {path.name}: {reason}; the prediction uses {MODALITY_NAMES[present]} only")
    return ClipData.from_numpy([0], n_classes, **arrays), present, window


@torch.no_grad()
def predict_recording(path: str | Path, run_dir: str | Path) -> Prediction:
    """Fused and incremental probabilities of `path` under the run's fold models (averaged)."""
    path, run_dir = Path(path), Path(run_dir)
    if not path.is_file():
        raise MerError(f"{path} does not exist")
    run_config = run_folder.read_run_config(run_dir)
    classes = mf.classes(run_config["data"]["dataset"])
    data, present, window = embed_recording(path, run_config, len(classes))
    models = run_folder.fold_models(run_dir, len(classes), data.dims(), data.n_windows).values()
    steps = [first_windows(data, t) for t in range(1, data.n_windows + 1)]
    probs = np.stack([np.mean([m(**d.inputs()).logits.softmax(1)[0].numpy() for m in models], axis=0)
                      for d in steps])
    return Prediction(classes, probs[-1], probs, window, present)


def run(video: str | Path, run_dir: str | Path, out: str | Path | None = None) -> Prediction:
    """The `mer predict` command: print the table, write <out>/<name>.csv and .png (default RUN/predict)."""
    from mer_lib import plots

    prediction = predict_recording(video, run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "predict"
    stem = Path(video).stem
    artifacts.write_csv(out / f"{stem}.csv", prediction.table().reset_index(names="windows"))
    plots.save(plots.window_probabilities(prediction.incremental, prediction.classes, prediction.window,
                                          fused=prediction.fused), out / f"{stem}.png")
    print(prediction.table().to_string())
    print(f"\n{stem}: {prediction.emotion} ({prediction.fused.max():.0%}); wrote {out}/{stem}.csv and .png")
    return prediction
