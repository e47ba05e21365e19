"""Noisy time windows and missing modalities (Ghaleb et al. 2023, section 5, Algorithm 1, Figures 5-8).

Section 5.1 replaces the embeddings of 1..T randomly placed time windows with Gaussian noise at
test time, in audio only, video only or both, for models trained on clean data; each setting is
repeated 10 times and the accuracies averaged (`inject_noise`, `noise_curve`). Section 5.2
retrains from scratch with noise: in every training iteration each sample gets a random number of
noisy windows, between 1 and half the windows (T/2), at random positions (`algorithm1`, called by
the training loop when ``TrainConfig.train_noise`` is set).

The noisy windows themselves (`inject_noise`, `algorithm1`, `drop_modality`) live in
`mer_lib.models.noise`, where the training loop can use them too: a noise window is a Gaussian
direction with the norm of the window it replaces, in the standardised space the model sees, and
only present windows are replaced. The curves here pass the model as that space.

Two related degradations that are not in the paper but come up with real recordings: a missing
modality (`drop_modality`: no face found, no audio track) and noise added to the raw waveform at a
chosen signal-to-noise ratio before extraction (`add_noise_snr`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mer_lib.analysis import accuracies, model_device, over_folds
from mer_lib.errors import MerError
from mer_lib.models.noise import drop_modality, inject_noise, input_space
from mer_lib.train import predict

NOISE_IN = {"a": "audio", "v": "video", "av": "audio and video"}  # the three places the paper puts noise


def add_noise_snr(waveform: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`waveform` plus white Gaussian noise at `snr_db` dB: 10 log10(P_signal / P_noise) = snr_db,

    with both powers the mean square over the whole signal (all samples and channels). The noise
    draw is rescaled to exactly that power, so the SNR is met up to rounding. Same dtype as the input.
    """
    waveform = np.asarray(waveform)
    if not np.issubdtype(waveform.dtype, np.floating):
        raise MerError(f"add_noise_snr needs a float waveform (got {waveform.dtype}); decode it with mer_lib.media")
    if not np.isfinite(snr_db):
        raise MerError(f"the SNR must be a finite number of dB (got {snr_db})")
    signal_power = float(np.mean(np.square(waveform, dtype=np.float64))) if waveform.size else 0.0
    if signal_power == 0.0:
        raise MerError("the waveform is silent (zero power): a signal-to-noise ratio is undefined")
    noise = rng.standard_normal(waveform.shape)
    noise *= np.sqrt(signal_power / 10 ** (snr_db / 10) / np.mean(noise**2))
    return (waveform + noise).astype(waveform.dtype)


def _seed(*keys: int) -> int:
    """A seed for one (k, repetition) draw that does not depend on which other draws are made."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def noise_curve(model, data, modality: str, ks=None, repetitions: int = 10, seed: int = 0) -> pd.DataFrame:
    """Accuracy with k noisy windows at test time (section 5.1; Figures 5-8), each k repeated.

    Rows: k, repetition, accuracy (fused) and accuracy_a / accuracy_v for the heads the model has.
    `ks` defaults to 1..T. Every (k, repetition) draw is seeded from (seed, k, repetition), so the
    table is the same on every call and a k's rows do not depend on the other ks asked for.
    """
    if repetitions < 1:
        raise MerError(f"repetitions must be at least 1 (got {repetitions})")
    ks = list(range(1, data.n_windows + 1)) if ks is None else list(ks)
    data = data.to(model_device(model))
    rows = []
    for k in tqdm(ks, desc=f"noise in {modality}", leave=False, disable=None):
        for repetition in range(repetitions):
            generator = torch.Generator().manual_seed(_seed(seed, k, repetition))
            noisy = inject_noise(data, modality, k, generator, space=input_space(model))
            rows.append({"k": k, "repetition": repetition} | accuracies(predict(model, noisy), noisy.labels))
    return pd.DataFrame(rows)


def noise_curves(trained: dict, modality: str, ks=None, repetitions: int = 10,
                 seed: int = 0) -> dict[str, pd.DataFrame]:
    """`noise_curve` with noise in `modality` for every fold of every run of `trained` ({name:
    run_folder.TrainedRun}): {name: table with a fold column}, ready for ``plots.noise_curves``."""
    return {name: over_folds(run, noise_curve, modality=modality, ks=ks, repetitions=repetitions, seed=seed)
            for name, run in trained.items()}


def mean_accuracy(curves: dict[str, pd.DataFrame], measure: str = "accuracy") -> pd.DataFrame:
    """One row per model of `curves` ({name: noise_curve table}), one column per k: the mean of
    `measure` over the repetitions (and folds), the numbers behind a noise figure."""
    return pd.DataFrame({name: curve.groupby("k")[measure].mean() for name, curve in curves.items()}).T.rename_axis(
        index="model", columns="k")


def missing_modality(model, data) -> pd.DataFrame:
    """The fused accuracy with both modalities, without audio and without video (`drop_modality`).

    Rows: missing ("none", "a", "v") and accuracy. With one modality missing, late fusion averages
    the other head only, so the model falls back to that modality instead of failing.
    """
    data = data.to(model_device(model))
    rows = [{"missing": "none"} | accuracies(predict(model, data), data.labels)]
    rows += [{"missing": m} | accuracies(predict(model, drop_modality(data, m)), data.labels) for m in ("a", "v")]
    return pd.DataFrame(rows)[["missing", "accuracy"]]
