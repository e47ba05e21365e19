"""Training: presets, checkpoints and resume, cross-validation artifacts, fusion benefit, bad input."""
from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mer_lib import checkpoints, cli, run_folder, train
from mer_lib import config as config_mod
from mer_lib.config import TrainConfig, make_config
from mer_lib.data.clips import ClipData
from mer_lib.data.cremad import CLASSES
from mer_lib.errors import MerError
from mer_lib.features import store
from mer_lib.features.corpus import load_corpus
from mer_lib.models.standardized import build_model

T, D = 4, 8


def toy_config(**overrides) -> TrainConfig:
    """A tiny MATER that trains in a second on the toy corpus."""
    settings = {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "dropout": 0.0, "lr": 3e-3, "epochs": 25,
                "batch_size": 32, "early_stopping": None, "device": "cpu"}
    return make_config("fast", **(settings | overrides))


def toy_windows(codes: np.ndarray, n_codes: int, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    """Windows (N, T, D) around one random centre per code: a modality that sees only `codes` of the label."""
    centres = rng.normal(size=(n_codes, D)) * 1.5
    return (centres[codes][:, None, :] + rng.normal(size=(len(codes), T, D)) * noise).astype(np.float32)


def make_data_dir(path, actors: int = 6, n_folds: int = 3, reps: int = 4, seed: int = 0):
    """A CREMA-D-like data folder: manifest, folds and an audio and a video store.

    Audio tells the label modulo 3 and video the label modulo 2, so each modality alone can reach
    at most 1/2 (audio) or 1/3 (video) accuracy, and only their fusion identifies all 6 emotions.
    One clip is unusable in the manifest and one is missing from the video store.
    """
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [{"id": f"{actor:04d}_{label}_{rep}", "dataset": "cremad", "actor": actor,
             "sex": "male" if actor % 2 else "female", "emotion": CLASSES[label], "label": label,
             "status": "ok", "reason": ""}
            for actor in range(1, actors + 1) for label in range(len(CLASSES)) for rep in range(reps)]
    rows.append(rows[0] | {"id": "broken", "status": "skip", "reason": "unreadable media"})
    manifest = pd.DataFrame(rows)
    manifest.to_csv(path / "manifest.csv", index=False)
    pd.DataFrame({"actor": range(1, actors + 1), "sex": ["male" if a % 2 else "female" for a in range(1, actors + 1)],
                  "fold": [(a - 1) % n_folds for a in range(1, actors + 1)]}).to_csv(path / "folds.csv", index=False)
    labels = manifest["label"].to_numpy()
    mask = np.arange(T)[None, :] < rng.integers(2, T + 1, size=len(labels))[:, None]
    ids = manifest["id"].tolist()
    audio = toy_windows(labels % 3, 3, rng)
    video = toy_windows(labels % 2, 2, rng)
    store.save_store(path, "audio-toy-w0.5xT4", store.EmbeddingStore(ids, audio, mask, {"extractor": "toy"}))
    store.save_store(path, "video-toy-w0.5xT4",
                     store.EmbeddingStore(ids[1:], video[1:], mask[1:], {"extractor": "toy"}))
    return path


def toy_clip_data(n: int = 96, seed: int = 0) -> ClipData:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return ClipData.from_numpy(labels, 3, audio=toy_windows(labels, 3, rng), video=toy_windows(labels, 3, rng))


# ------------------------------------------------------------------------------------------- configuration


def test_paper_preset_is_the_published_training_setup():
    config = make_config("paper")
    assert (config.lr, config.epochs, config.batch_size, config.patience) == (1e-6, 300, 64, 20)
    assert config.early_stopping is None and config.preset == "paper"
    assert (config.d_model, config.heads, config.layers, config.d_ff) == (512, 8, 6, 2048)


def test_one_default_preset_for_the_library_and_the_command():
    assert config_mod.DEFAULT_PRESET == "fast"
    assert inspect.signature(make_config).parameters["preset"].default == config_mod.DEFAULT_PRESET
    default = make_config()
    assert dataclasses.replace(TrainConfig(), preset=config_mod.DEFAULT_PRESET) == default  # the bare defaults
    args = cli.build_parser().parse_args(["train", "data", "--out", "run"])
    settings = config_mod.flag_settings(args)
    assert args.preset == config_mod.DEFAULT_PRESET and make_config(args.preset, **settings) == default
    assert config_mod.config_from_flags([]) == default


def test_mer_train_flags_come_from_the_config():
    args = cli.build_parser().parse_args(["train", "data", "--out", "run", "--no-pe", "--spec-augment", "--d-model",
                                          "64", "--noise-snr", "5", "--loss", "triplet", "--checkpoint-every", "3"])
    assert (args.pe, args.spec_augment, args.d_model, args.noise_snr, args.loss, args.checkpoint_every) == \
        (False, True, 64, 5.0, "triplet", 3)
    flagged = [f.name for f in config_mod.flags()]
    assert {"model", "heads", "lr", "epochs", "seed", "device", "mixup"} <= set(flagged)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "data", "--out", "run", "--schedule", "cosine"])
    # the settings a `mer train` command line asks for, without running it (mer protocol compares them)
    asked = config_mod.config_from_flags(["--audio", "egemaps", "--preset", "audio", "--no-pe", "--d-model", "64"])
    assert asked == make_config("audio", pe=False, d_model=64) and asked.label_smoothing == 0.1


def test_fast_preset_and_overrides():
    fast = make_config("fast", epochs=7, model="lstm", device=None)
    assert fast.lr > make_config("paper").lr and fast.epochs == 7 and fast.model == "lstm"
    assert fast.early_stopping is not None and fast.device == "auto"
    with pytest.raises(MerError, match="unknown preset 'slow'"):
        make_config("slow")
    with pytest.raises(MerError, match="unknown training settings: learning_rate"):
        make_config("fast", learning_rate=1.0)
    with pytest.raises(MerError, match="unknown model 'gru'"):
        make_config("fast", model="gru")
    with pytest.raises(MerError, match="unknown modalities 'va'"):
        make_config("fast", modalities="va")


def test_devices():
    assert train.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert train.resolve_device("cpu").type == "cpu"
    with pytest.raises(MerError, match="unknown device 'gpu0'"):
        train.resolve_device("gpu0")


def test_parse_folds():
    assert train.parse_folds("all", 4) == [0, 1, 2, 3]
    assert train.parse_folds("3,0", 4) == [0, 3]
    assert train.parse_folds([1], 4) == [1]
    with pytest.raises(MerError, match="fold 7 does not exist"):
        train.parse_folds("0,7", 4)
    with pytest.raises(MerError, match="bad folds 'first'"):
        train.parse_folds("first", 4)


# --------------------------------------------------------------------------------- training and checkpoints


def test_train_fold_learns_and_keeps_the_best_validation_weights():
    data = toy_clip_data()
    model, history = train.train_fold(toy_config(modalities="av", epochs=15), data.take(range(64)),
                                      data.take(range(64, 96)))
    assert [row["epoch"] for row in history] == list(range(15))
    assert set(history[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"}
    best = min(history, key=lambda row: row["val_loss"])
    val_loss, val_acc = train.evaluate(model, data.take(range(64, 96)))
    assert val_loss == pytest.approx(best["val_loss"], rel=1e-5) and val_acc == best["val_accuracy"]
    assert best["val_accuracy"] > 0.9  # both modalities see the full label here


def test_the_lstm_baseline_trains_in_the_same_loop():
    data = toy_clip_data()
    model, history = train.train_fold(toy_config(model="lstm", epochs=15), data.take(range(64)),
                                      data.take(range(64, 96)))
    assert type(model.model).__name__ == "LstmBaseline" and len(model.model.branches["a"].layers) == 1
    assert max(row["val_accuracy"] for row in history) > 0.9


def test_early_stopping_and_the_plateau_scheduler():
    data = toy_clip_data()
    noise = torch.randint(0, 3, (len(data),), generator=torch.Generator().manual_seed(0))
    data = dataclasses.replace(data, labels=noise)  # nothing to learn: validation loss soon rises
    config = toy_config(lr=0.01, epochs=60, patience=1, lr_factor=0.5, early_stopping=3)
    _, history = train.train_fold(config, data.take(range(64)), data.take(range(64, 96)))
    assert len(history) < 60
    losses = [row["val_loss"] for row in history]
    best = int(np.argmin(losses))
    assert len(history) == best + 1 + 3  # stopped after 3 epochs without a better validation loss
    lrs = [row["lr"] for row in history]
    assert lrs[0] == 0.01 and min(lrs) < 0.01  # the plateau scheduler reduced the learning rate


def test_a_crash_resumes_from_the_last_checkpoint_and_ends_like_an_uninterrupted_run(tmp_path, monkeypatch):
    data = toy_clip_data()
    train_data, val_data = data.take(range(64)), data.take(range(64, 96))
    config = toy_config(epochs=8)
    reference, reference_history = train.train_fold(config, train_data, val_data)

    real_epoch, calls = train.run_epoch, []

    def crash_after(k):
        def step(*args, **kwargs):
            calls.append(1)
            if len(calls) > k:
                raise KeyboardInterrupt("simulated crash")
            return real_epoch(*args, **kwargs)
        return step

    path = tmp_path / "fold0.pt"
    monkeypatch.setattr(train, "run_epoch", crash_after(3))
    with pytest.raises(KeyboardInterrupt):
        train.train_fold(config, train_data, val_data, path)
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 3 and not saved["finished"] and len(saved["history"]) == 3
    assert {"model", "optimizer", "scheduler", "best_val_loss"} <= set(saved)

    calls.clear()
    monkeypatch.setattr(train, "run_epoch", crash_after(100))
    resumed, history = train.train_fold(config, train_data, val_data, path)
    assert len(calls) == 8 - 3  # continued at epoch 3, not from scratch
    assert history == reference_history
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key

    # a finished fold is loaded, not trained again
    calls.clear()
    again, again_history = train.train_fold(config, train_data, val_data, path)
    assert not calls and again_history == reference_history
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.state_dict().items())
    assert "optimizer" not in torch.load(path, weights_only=True)  # finished: only the best weights are kept

    with pytest.raises(MerError, match="other training settings"):
        train.train_fold(toy_config(epochs=9), train_data, val_data, path)


def test_training_is_deterministic_on_cpu():
    data = toy_clip_data()
    runs = [train.train_fold(toy_config(epochs=3, dropout=0.1), data.take(range(64)), data.take(range(64, 96)))
            for _ in range(2)]
    assert runs[0][1] == runs[1][1]


def test_train_fold_needs_validation_clips():
    data = toy_clip_data()
    with pytest.raises(MerError, match="0 validation"):
        train.train_fold(toy_config(), data, data.take([]))


# ---------------------------------------------------------------------------------------- cross-validation


def test_cross_validate_writes_every_artifact(tmp_path):
    data_dir = make_data_dir(tmp_path / "data")
    out = tmp_path / "run"
    metrics = train.cross_validate(data_dir, toy_config(), out)

    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.json", "predictions.csv", "history.csv",
                                               "checkpoints"}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["fold0.pt", "fold1.pt", "fold2.pt"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy_mean"] == pytest.approx(metrics["accuracy_mean"])
    assert len(saved["per_fold"]) == 3 and saved["folds"] == [0, 1, 2]
    assert saved["accuracy_mean"] == pytest.approx(np.mean(saved["per_fold"]))
    assert saved["accuracy_std"] == pytest.approx(np.std(saved["per_fold"]))
    assert saved["n_clips"] == 6 * 6 * 4 - 1  # the unusable clip and the clip without video are left out
    assert saved["config"]["model"] == "mater" and saved["classes"] == list(CLASSES)
    assert saved["data"]["stores"] == {"audio": "audio-toy-w0.5xT4", "video": "video-toy-w0.5xT4"}
    assert np.array(saved["confusion_matrix"]).sum() == saved["n_clips"]
    assert set(saved["per_class_accuracy"]) == set(CLASSES) and "accuracy_a_mean" in saved

    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == saved["n_clips"] and predictions["id"].is_unique
    assert list(predictions.columns[:6]) == ["id", "fold", "actor", "emotion", "label", "predicted"]
    for prefix in ("p_", "p_a_", "p_v_"):
        probs = predictions[[f"{prefix}{c}" for c in CLASSES]].to_numpy()
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    folds = pd.read_csv(data_dir / "folds.csv").set_index("actor")["fold"]
    assert (predictions["actor"].map(folds) == predictions["fold"]).all()  # each clip tested in its actor's fold
    hits = predictions.groupby("fold").apply(lambda g: (g["predicted"] == g["emotion"]).mean(), include_groups=False)
    assert np.allclose(hits.to_numpy(), saved["per_fold"])

    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["fold", "seed", "epoch", "train_loss", "train_accuracy", "val_loss",
                                     "val_accuracy", "lr"]
    assert history.groupby("fold").size().tolist() == [25, 25, 25]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["d_model"] == 16

    # a rerun reuses the finished folds and writes the same metrics
    assert train.cross_validate(data_dir, toy_config(), out, folds="1")["per_fold"] == [saved["per_fold"][1]]
    with pytest.raises(MerError, match="holds a run with other settings"):
        train.cross_validate(data_dir, toy_config(lr=1e-3), out)


def test_fusion_beats_each_modality_when_both_carry_part_of_the_label(tmp_path):
    data_dir = make_data_dir(tmp_path)
    accuracy = {m: train.cross_validate(data_dir, toy_config(modalities=m, epochs=40), tmp_path / m)["accuracy_mean"]
                for m in ("a", "v", "av")}
    assert accuracy["a"] < 0.6 and accuracy["v"] < 0.45  # at most 1/2 and 1/3 in theory
    assert accuracy["av"] > accuracy["a"] + 0.2 and accuracy["av"] > accuracy["v"] + 0.2


def test_two_folds_hold_out_a_stratified_share_of_the_training_clips(tmp_path):
    data_dir = make_data_dir(tmp_path, actors=4, n_folds=2, reps=10)
    corpus = load_corpus(data_dir, "av")
    fold_table = pd.read_csv(data_dir / "folds.csv")
    trn, val, test = train.fold_indices(corpus.clips, fold_table, 0, toy_config())
    assert not set(trn) & set(val) and not set(test) & (set(trn) | set(val))
    assert set(corpus.clips["actor"].iloc[test]) == {1, 3}
    assert set(corpus.clips["actor"].iloc[val]) <= {2, 4}
    assert len(val) == pytest.approx(0.15 * (len(trn) + len(val)), abs=1)
    assert np.bincount(corpus.clips["label"].iloc[val], minlength=6).min() >= 2  # every class is represented


def test_bad_input_is_one_line_errors(tmp_path):
    data_dir = make_data_dir(tmp_path / "data")
    with pytest.raises(MerError, match="fold 5 does not exist"):
        train.cross_validate(data_dir, toy_config(), tmp_path / "run", folds="5")
    with pytest.raises(MerError, match="no audio embeddings .*match"):
        train.cross_validate(data_dir, toy_config(), tmp_path / "run", audio="vggish")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MerError, match="manifest.csv not found"):
        train.cross_validate(empty, toy_config(), tmp_path / "run")
    for npz in (data_dir / "embeddings").glob("video-*"):
        npz.unlink()
    with pytest.raises(MerError, match="run `mer extract` first"):
        train.cross_validate(data_dir, toy_config(), tmp_path / "run")
    with pytest.raises(MerError, match="unknown modalities"):
        train.cross_validate(data_dir, TrainConfig(modalities="audio"), tmp_path / "run")


# --------------------------------------------------------------------------- standardisation, other models


def test_standardized_uses_the_training_statistics_and_travels_with_the_checkpoint(tmp_path):
    data = toy_clip_data()
    data.audio = data.audio * 50 + 7  # a modality on another scale
    model = build_model(toy_config(), 3, data.dims(), data.n_windows).fit(data.take(range(64)))
    present = data.take(range(64)).audio.reshape(-1, D)
    assert torch.allclose(model.mean_a, present.mean(0)) and torch.allclose(model.std_a, present.std(0, unbiased=False))
    seen = {}
    model.model.forward = lambda **inputs: seen.update(inputs)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, -1] = False
    model(audio=data.audio[:2], video=data.video[:2], audio_mask=mask, video_mask=mask)
    expected = (data.audio[:2] - model.mean_a) / model.std_a
    assert torch.allclose(seen["audio"][1], expected[1]) and (seen["audio"][0, -1] == 0).all()
    # unfitted: the identity
    plain = build_model(toy_config(), 3, data.dims(), data.n_windows)
    assert torch.equal(plain.mean_v, torch.zeros(D)) and torch.equal(plain.std_v, torch.ones(D))

    config = toy_config(epochs=2)
    trained, _ = train.train_fold(config, data.take(range(64)), data.take(range(64, 96)), tmp_path / "fold0.pt")
    loaded = run_folder.load_fold_model(tmp_path / "fold0.pt", 3, data.dims(), data.n_windows)
    assert torch.equal(loaded.mean_a, trained.mean_a)
    assert torch.allclose(train.predict(loaded, data).logits, train.predict(trained, data).logits)


@pytest.mark.parametrize("settings", [{"model": "cross_attention"}, {"model": "cross_attention", "loss": "emotion"},
                                      {"model": "cross_attention", "modalities": "v"}, {"model": "jca"}])
def test_fusion_models_train_in_the_same_loop(tmp_path, settings):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    metrics = train.cross_validate(data_dir, toy_config(epochs=2, **settings), tmp_path / "run", folds="0")
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert metrics["config"]["model"] == settings["model"] and len(predictions) == metrics["n_clips"]
    assert np.allclose(predictions[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1, atol=1e-5)
    single = settings.get("modalities") == "v"
    assert ("accuracy_v_mean" in metrics) == single and "accuracy_a_mean" not in metrics


def test_metric_losses_are_refused_where_they_have_no_embedding():
    with pytest.raises(MerError, match="needs the fused embedding"):
        make_config("fast", model="mater", loss="emotion")
    with pytest.raises(MerError, match="use --modalities av"):
        make_config("fast", model="jca", modalities="a")


def test_checkpoint_every_spaces_the_resumable_checkpoints(tmp_path, monkeypatch):
    data = toy_clip_data()
    saved = []
    real_save = checkpoints.save
    monkeypatch.setattr(checkpoints, "save", lambda path, config, finished, **parts: (
        saved.append((parts.get("epoch"), finished)), real_save(path, config, finished, **parts)))
    train.train_fold(toy_config(epochs=7, checkpoint_every=3), data.take(range(64)), data.take(range(64, 96)),
                     tmp_path / "fold.pt")
    assert saved == [(3, False), (6, False), (7, True)]


# ------------------------------------------------------------------------------- loading runs, embeddings


def test_load_trained_gives_back_each_folds_model_and_test_clips(tmp_path):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    config = toy_config(epochs=2)
    train.cross_validate(data_dir, config, tmp_path / "run", folds="0,2")
    run = run_folder.load_trained(tmp_path / "run")
    assert sorted(run.models) == [0, 2] and run.config == config
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    for fold in (0, 2):
        tested = predictions[predictions["fold"] == fold]
        assert run.corpus.clips["id"].iloc[run.tests[fold]].tolist() == tested["id"].tolist()
        probs = train.predict(run.models[fold], run.test_data(fold)).logits.softmax(1).numpy()
        assert np.allclose(probs, tested[[f"p_{c}" for c in CLASSES]].to_numpy(), atol=1e-5)
    clips, emotions = run.examples(0, n=3)
    assert len(clips) == 3 and len(set(emotions)) == 3
    with pytest.raises(MerError, match="not a `mer train` run folder"):
        run_folder.load_trained(tmp_path)


def test_fused_embeddings_and_their_tsne(tmp_path):
    from mer_lib.analysis import embedding

    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    train.cross_validate(data_dir, toy_config(model="cross_attention", epochs=1), tmp_path / "ca", folds="0,1")
    run = run_folder.load_trained(tmp_path / "ca")
    vectors, labels = embedding.fused_embeddings(run)
    n_test = sum(len(t) for t in run.tests.values())
    assert vectors.shape == (n_test, 16) and len(labels) == n_test
    assert embedding.tsne(vectors).shape == (n_test, 2)
    train.cross_validate(data_dir, toy_config(epochs=1), tmp_path / "mater", folds="0")
    with pytest.raises(MerError, match="has no fused embedding"):
        embedding.fused_embeddings(run_folder.load_trained(tmp_path / "mater"))


def test_cross_attention_trains_on_cached_backbone_maps(tmp_path):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    audio = store.load_store(data_dir, "audio")
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(len(audio.ids), T, 8 * 2 * 2)).astype(np.float32)  # m = 8 channels of 2 x 2
    store.save_store(data_dir, "video-maps32-w0.5xT4", store.EmbeddingStore(
        audio.ids, maps, np.ones((len(audio.ids), T), bool),
        {"extractor": "maps32", "backbone": "r3d_18", "map_shape": [8, 2, 2], "frame_size": 32, "dim": 32}))
    metrics = train.cross_validate(data_dir, toy_config(model="cross_attention", epochs=1), tmp_path / "run",
                                   folds="0", video="maps32")
    assert (metrics["config"]["frame_size"], metrics["config"]["map_channels"]) == (32, 8)
    no_vs = train.cross_validate(data_dir, toy_config(model="cross_attention", epochs=1, vs=False), tmp_path / "novs",
                                 folds="0", video="maps32")
    visual = run_folder.load_trained(tmp_path / "novs").models[0].model.visual_spatial_channel
    assert no_vs["config"]["vs"] is False and visual.spatial is None and visual.channel is not None
    run = run_folder.load_trained(tmp_path / "run")
    assert run.models[0].model.visual_spatial_channel is not None  # VS and VC read the maps
    with pytest.raises(MerError, match="--model cross_attention"):
        train.cross_validate(data_dir, toy_config(epochs=1), tmp_path / "mater", folds="0", video="maps32")


def test_a_run_folder_from_before_a_new_setting_is_still_the_same_run(tmp_path):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    train.cross_validate(data_dir, toy_config(epochs=1), tmp_path / "run", folds="0")
    path = tmp_path / "run" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["train"]["map_channels"], saved["train"]["frame_size"]  # written before these settings existed
    path.write_text(yaml.safe_dump(saved))
    train.cross_validate(data_dir, toy_config(epochs=1), tmp_path / "run", folds="0")
    with pytest.raises(MerError, match="other settings"):
        train.cross_validate(data_dir, toy_config(epochs=1, train_noise="a"), tmp_path / "run", folds="0")


def test_a_checkpoint_from_before_a_new_setting_is_still_used(tmp_path):
    data = toy_clip_data()
    config = toy_config(epochs=2)
    train.train_fold(config, data.take(range(64)), data.take(range(64, 96)), tmp_path / "fold.pt")
    checkpoint = torch.load(tmp_path / "fold.pt", weights_only=True)
    del checkpoint["config"]["vs"], checkpoint["config"]["vc"]  # written before these settings existed
    torch.save(checkpoint, tmp_path / "fold.pt")
    _, history = train.train_fold(config, data.take(range(64)), data.take(range(64, 96)), tmp_path / "fold.pt")
    assert history == checkpoint["history"]
    with pytest.raises(MerError, match="other training settings"):
        train.train_fold(toy_config(epochs=2, vs=False), data.take(range(64)), data.take(range(64, 96)),
                         tmp_path / "fold.pt")



def test_folds_are_trained_again_when_their_embeddings_change_not_when_a_store_is_rewritten(tmp_path):
    """Fold results and checkpoints record the clips' fingerprint (Corpus.fingerprint): a store whose content
    changed (e.g. re-extracted from other frames) is trained on again; one rewritten as it was is reused."""
    data_dir = make_data_dir(tmp_path / "data")
    out = tmp_path / "run"
    config = toy_config(modalities="av", epochs=3)
    train.cross_validate(data_dir, config, out, folds="0")
    first = json.loads((out / "folds" / "fold0.json").read_text())
    assert first["data"] == load_corpus(data_dir, "av").fingerprint and not run_folder.outdated(out)

    video = store.load_store(data_dir, "video")
    store.save_store(data_dir, "video-toy-w0.5xT4", store.EmbeddingStore(video.ids, video.X, video.mask, video.meta))
    assert not run_folder.outdated(out)  # the same content: nothing to train again
    train.cross_validate(data_dir, config, out, folds="0")
    assert (out / "folds" / "fold0.json").read_text() == json.dumps(first)

    store.save_store(data_dir, "video-toy-w0.5xT4",
                     store.EmbeddingStore(video.ids, video.X[..., ::-1].copy(), video.mask, video.meta))
    assert run_folder.outdated(out)  # what `mer protocol` and the timeline bench ask before reusing a run
    train.cross_validate(data_dir, config, out, folds="0")
    again = json.loads((out / "folds" / "fold0.json").read_text())
    assert again["data"] == load_corpus(data_dir, "av").fingerprint != first["data"]
    assert again["probabilities"] != first["probabilities"] and not run_folder.outdated(out)
