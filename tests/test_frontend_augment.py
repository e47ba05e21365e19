"""The learned log-mel front-end: patches, the CNN, augmentation of training clips only, the audio recipe."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib import run_folder, train
from mer_lib.config import TrainConfig, make_config
from mer_lib.data.cremad import CLASSES
from mer_lib.errors import MerError
from mer_lib.features import store
from mer_lib.features.audio import LogMelPatches
from mer_lib.models import augment
from mer_lib.models.frontend import ConvFrontEnd

FRAMES, BANDS, T = 32, 64, 3  # 32 frames: the fewest the conv front-end takes


def patches(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, T, FRAMES * BANDS) log-mel-like patches and a mask with the last window of clip 0 padded."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, FRAMES * BANDS, generator=generator) - 3.0
    mask = torch.ones(n, T, dtype=torch.bool)
    mask[0, -1] = False
    x[0, -1] = 0.0
    return x, mask


def test_logmel_patches_are_raw_whole_patches_per_window():
    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    X, mask = LogMelPatches().embed(signal, 0.5, 4)
    assert X.shape == (4, 48 * 64) and mask.all()
    assert not np.allclose(np.linalg.norm(X, axis=1), 1.0)  # not l2-normalised: log(mel + 0.01) values
    assert X.min() >= np.log(0.01) - 1e-6
    with pytest.raises(MerError, match="one length"):
        LogMelPatches().embed(signal, None, None, layout="clip")


def test_conv_frontend_embeds_present_windows_only():
    x, mask = patches()
    frontend = ConvFrontEnd(FRAMES * BANDS, 32).eval()
    out = frontend(x, mask)
    assert out.shape == (6, T, 32) and torch.all(out[0, -1] == 0)
    changed = x.clone()
    changed[0, -1] = 50.0  # a padded window's content cannot change anything
    assert torch.allclose(frontend(changed, mask), out)
    with pytest.raises(MerError, match="logmel_patches"):
        ConvFrontEnd(100, 32)


def test_spec_augment_masks_present_windows_and_keeps_padding():
    x, mask = patches()
    torch.manual_seed(0)
    out = augment.spec_augment(x, mask, BANDS)
    assert out.shape == x.shape and torch.equal(out[0, -1], x[0, -1])
    assert (out != x).any() and torch.isclose(out[out != x], x.min()).all()  # masked cells read as silence


def test_noise_only_raises_mel_energy_and_most_in_quiet_bins():
    x, mask = patches()
    out = augment.add_noise(x, mask, snr=10.0)
    assert (out >= x).all() and torch.equal(out[0, -1], x[0, -1])
    quiet, loud = x < x.quantile(0.1), x > x.quantile(0.9)
    assert (out - x)[quiet].mean() > (out - x)[loud].mean()


def test_mixup_mixes_windows_and_labels_alike():
    x, mask = patches()
    targets = torch.nn.functional.one_hot(torch.arange(6) % 3, 3).float()
    torch.manual_seed(1)
    mixed, soft = augment.mixup({"audio": x, "audio_mask": mask, "video": None, "video_mask": None}, targets, 0.4)
    assert torch.allclose(soft.sum(1), torch.ones(6)) and mixed["video"] is None
    assert mixed["audio_mask"].all()  # clip 0's padded window is present in its partner


def make_patch_dir(path, actors: int = 4, reps: int = 3):
    """A CREMA-D-like data folder with a logmel_patches-shaped store; each emotion has its own loud band."""
    path.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"{a:04d}_{label}_{r}", "dataset": "cremad", "actor": a, "sex": "male" if a % 2 else "female",
             "emotion": CLASSES[label], "label": label, "status": "ok", "reason": ""}
            for a in range(1, actors + 1) for label in range(len(CLASSES)) for r in range(reps)]
    manifest = pd.DataFrame(rows)
    manifest.to_csv(path / "manifest.csv", index=False)
    pd.DataFrame({"actor": range(1, actors + 1), "sex": ["male", "female"] * (actors // 2),
                  "fold": [(a - 1) // 2 for a in range(1, actors + 1)]}).to_csv(path / "folds.csv", index=False)
    rng = np.random.default_rng(0)
    X = rng.normal(-3.0, 0.5, size=(len(rows), T, FRAMES, BANDS)).astype(np.float32)
    for i, label in enumerate(manifest["label"]):
        X[i, :, :, 10 * label: 10 * label + 16] += 3.0  # wider than a frequency mask
    store.save_store(path, "audio-logmel_patches-w0.22xT3", store.EmbeddingStore(
        manifest["id"].tolist(), X.reshape(len(rows), T, -1), np.ones((len(rows), T), bool),
        {"extractor": "logmel_patches"}))
    return manifest


def recipe(**overrides) -> TrainConfig:
    """The audio preset at toy size."""
    settings = {"modalities": "a", "d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "epochs": 15,
                "batch_size": 16, "device": "cpu"}
    return make_config("audio", **(settings | overrides))


def test_the_audio_recipe_learns_and_augments_only_training_clips(tmp_path, monkeypatch):
    manifest = make_patch_dir(tmp_path / "data")
    seen = []
    original = train.augment_batch

    def spy(batch, config):
        seen.append(batch.audio.reshape(len(batch), -1)[:, 0].clone())  # first value identifies the clip
        return original(batch, config)

    monkeypatch.setattr(train, "augment_batch", spy)
    metrics = train.cross_validate(tmp_path / "data", recipe(noise_snr=30.0), tmp_path / "run", folds=[0])
    assert metrics["accuracy_mean"] > 0.3  # chance is 1/6
    with np.load(tmp_path / "data" / "embeddings" / "audio-logmel_patches-w0.22xT3.npz") as npz:
        first = npz["X"][:, 0, 0]
    test_values = set(first[manifest["actor"].isin([1, 2]).to_numpy()].tolist())
    augmented = set(torch.cat(seen).tolist())
    assert augmented and not augmented & test_values  # fold 0 tests actors 1 and 2
    assert len(augmented) == (manifest["actor"] > 2).sum()  # validation "none": every other actor trains


def test_the_audio_recipe_is_deterministic_by_seed(tmp_path):
    make_patch_dir(tmp_path / "data")
    runs = [train.cross_validate(tmp_path / "data", recipe(seed=s, epochs=2), tmp_path / f"run{i}", folds=[0])
            for i, s in enumerate((0, 0, 1))]
    probabilities = [pd.read_csv(tmp_path / f"run{i}" / "predictions.csv").filter(like="p_").to_numpy()
                     for i in range(3)]
    assert np.array_equal(probabilities[0], probabilities[1])
    assert not np.allclose(probabilities[0], probabilities[2])
    assert runs[0]["accuracy_mean"] == runs[1]["accuracy_mean"]


def test_recipe_settings_that_cannot_work_are_one_line_errors():
    with pytest.raises(MerError, match="fixed number of epochs"):
        make_config("fast", validation="none")
    with pytest.raises(MerError, match="mater"):
        make_config("fast", model="lstm", frontend="conv")
    with pytest.raises(MerError, match="soft labels"):
        make_config("fast", model="cross_attention", loss="emotion", mixup=0.2)
    with pytest.raises(MerError, match="unknown frontend"):
        make_config("fast", frontend="vggish")


def test_several_seeds_train_each_fold_and_predictions_average_them(tmp_path):
    make_patch_dir(tmp_path / "data")
    metrics = train.cross_validate(tmp_path / "data", recipe(epochs=2), tmp_path / "run", folds=[0], seeds=[3, 4])
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["fold0-seed3.pt", "fold0-seed4.pt"]
    per_seed = pd.read_csv(tmp_path / "run" / "predictions_seeds.csv")
    ensemble = pd.read_csv(tmp_path / "run" / "predictions.csv")
    mean = per_seed.groupby("id")[[f"p_{c}" for c in CLASSES]].mean().loc[ensemble["id"]].to_numpy()
    assert np.allclose(mean, ensemble[[f"p_{c}" for c in CLASSES]].to_numpy(), atol=1e-6)
    assert metrics["seeds"]["seeds"] == [3, 4] and len(metrics["seeds"]["accuracy_per_seed"]) == 2
    models = run_folder.fold_models(tmp_path / "run", len(CLASSES), {"a": FRAMES * BANDS}, T)
    assert list(models) == [0]
    with pytest.raises(MerError, match="seeds"):
        from mer_lib import cli
        cli._integers("0,x", "--seeds")


def test_a_step_budget_sets_the_epochs_from_the_training_clips(tmp_path):
    config = make_config("audio")
    assert train.with_step_budget(config, 600).epochs == 40  # the development folds: 10 actors' 600 clips
    assert train.with_step_budget(config, 1320).epochs == 18  # 22 RAVDESS actors: same steps, fewer epochs
    assert train.with_step_budget(make_config("audio", epochs=5), 1320).epochs == 5  # --epochs caps it
    assert train.with_step_budget(make_config("fast"), 1320).epochs == 60  # no budget: unchanged
    manifest = make_patch_dir(tmp_path / "data")
    train.cross_validate(tmp_path / "data", recipe(steps=4, epochs=50), tmp_path / "run", folds=[0])
    batches = -(-(manifest["actor"] > 2).sum() // 16)  # fold 0 trains every actor but 1 and 2, 16 clips a batch
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == max(1, round(4 / batches))


def test_speed_and_vocal_tract_perturbation_move_content_along_each_axis():
    x, mask = patches(n=2)
    x[:] = -5.0
    x.view(2, T, FRAMES, BANDS)[:, :, FRAMES // 2, 20] = 5.0  # one loud cell per window: middle frame, band 20
    same = augment.scale_axes(x, mask, torch.ones(2), torch.ones(2), BANDS)
    assert torch.allclose(same, x, atol=1e-5)  # factors of 1 change nothing
    out = augment.scale_axes(x, mask, torch.tensor([1.0, 1.0]), torch.tensor([1.25, 1.0]), BANDS)
    loudest_band = out.view(2, T, FRAMES, BANDS)[:, 1, FRAMES // 2].argmax(-1)
    assert loudest_band.tolist() == [25, 20]  # clip 0's band 20 moved to 25 (from 0 Hz), clip 1's kept
    x.view(2, T, FRAMES, BANDS)[:, :, FRAMES // 2] = -5.0
    late = FRAMES // 2 + 4  # 4 frames after the centre (frames 0-31: centre 15.5)
    x.view(2, T, FRAMES, BANDS)[:, :, late, 20] = 5.0
    slower = augment.scale_axes(x, mask, torch.tensor([0.5, 1.0]), torch.ones(2), BANDS)
    loudest_frame = slower.view(2, T, FRAMES, BANDS)[:, 1, :, 20].argmax(-1)
    assert loudest_frame[0] > late and loudest_frame[1] == late  # played at half speed: further from the centre
    torch.manual_seed(0)
    warped = augment.warp(x, mask, 0.2, BANDS)
    assert warped.shape == x.shape and torch.equal(warped[0, -1], x[0, -1])  # padded window untouched
    assert not torch.allclose(warped[mask], x[mask])
