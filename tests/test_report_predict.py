"""`mer report` tables beside the papers, and `mer predict` on a new recording."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_lib import artifacts, cli, predict, report, train
from mer_lib.data import manifest as mf
from mer_lib.data import synthetic
from mer_lib.errors import MerError
from mer_lib.features import store
from mer_lib.features.extract import ExtractConfig, embed_audio

T, WINDOW = 4, 0.5


def write_data_dir(data_dir, dim: int, n_actors: int = 4, per_class: int = 3, seed: int = 0) -> None:
    """A prepared data folder with an eGeMAPS-shaped audio store: labels shift the windows' mean."""
    rng = np.random.default_rng(seed)
    classes = mf.classes("synthetic")
    rows = [{"id": f"{a:02d}-{label}-{k}", "dataset": "synthetic", "actor": a, "emotion": c, "label": label,
             "status": "ok", "has_audio": True, "has_video": False, "duration": T * WINDOW}
            for a in range(1, n_actors + 1) for label, c in enumerate(classes) for k in range(per_class)]
    manifest = pd.DataFrame(rows).reindex(columns=mf.COLUMNS)
    artifacts.write_csv(data_dir / "manifest.csv", manifest)
    artifacts.write_csv(data_dir / "folds.csv", pd.DataFrame({"actor": range(1, n_actors + 1), "sex": "female",
                                                              "fold": [a // 2 for a in range(n_actors)]}))
    centres = rng.normal(size=(len(classes), dim))
    X = centres[manifest["label"].to_numpy()][:, None, :] + rng.normal(size=(len(rows), T, dim))
    config = ExtractConfig("audio", "egemaps", WINDOW, T)
    store.save_store(data_dir, config.name, store.EmbeddingStore(
        manifest["id"].tolist(), X.astype(np.float32), np.ones((len(rows), T), bool),
        {"extractor": "egemaps", "modality": "audio", "window": WINDOW, "count": T, "frame_step": 1,
         "chip_size": 96, "openface_dir": None, "dim": dim}))


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    """A finished two-fold audio MATER run on a hand-made store, and one synthetic recording."""
    root = tmp_path_factory.mktemp("run")
    media = synthetic.synthesize(root / "media", actors=1, duration=2.0, limit=1, workers=1)[0]
    dim = embed_audio({"audio_path": str(media)}, ExtractConfig("audio", "egemaps", WINDOW, T))[0].shape[1]
    write_data_dir(root / "data", dim)
    config = train.make_config("fast", modalities="a", d_model=16, heads=2, layers=1, d_ff=32, epochs=3,
                               device="cpu")
    train.cross_validate(root / "data", config, root / "run")
    return root, media


def test_report_places_runs_beside_published_numbers(audio_run, tmp_path, capsys):
    root, _ = audio_run
    tables = report.report([root / "run"], out=tmp_path / "report")
    row = tables["results"].iloc[0]
    assert (row["dataset"], row["model"], row["modalities"], row["windows"], row["window"]) == \
        ("synthetic", "mater", "a", T, WINDOW)
    metrics = artifacts.read_json(root / "run" / "metrics.json")
    assert row["accuracy"] == round(100 * metrics["accuracy_mean"], 1)
    t1 = tables["table1"].set_index(["dataset", "windows", "window", "pe", "mhsa"])
    assert t1.loc[("ravdess", 8, 0.5, True, True), "published"] == 76.3
    assert t1.loc[("cremad", 12, 0.25, False, False), "published"] == 58.3
    t3 = tables["table3"]
    human = t3[(t3["dataset"] == "ravdess") & (t3["attention"] == "human raters")].iloc[0]
    assert (human["a published"], human["v published"], human["av published"]) == (62.0, 72.0, 80.0)
    ours = t3[(t3["dataset"] == "synthetic") & (t3["attention"] == True)].iloc[0]  # noqa: E712
    assert ours["a"] == row["accuracy"] and pd.isna(ours["av"])
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "confusion_run.png").is_file()
    assert "76.3" in capsys.readouterr().out


def test_table1_puts_our_run_on_the_published_row():
    results = pd.DataFrame([{"run": "x", "dataset": "ravdess", "model": "mater", "modalities": "av", "pe": False,
                             "mhsa": True, "fusion": True, "loss": "softmax", "train_noise": None, "windows": 8,
                             "window": 0.5, "accuracy": 70.0, "std": 2.0}])
    row = report.table1(results).set_index(["dataset", "windows", "window", "pe", "mhsa"]).loc[
        ("ravdess", 8, 0.5, False, True)]
    assert (row["ours"], row["published"], row["run"]) == (70.0, 75.2, "x")
    fusion = report.fusion_table(results)
    assert (fusion["published RAVDESS"].tolist(), fusion["published CREMA-D"].tolist()) == ([75.2], [65.0])
    emotion = results.assign(model="cross_attention", loss="emotion")
    assert report.fusion_table(emotion)["published CREMA-D"].tolist() == [84.57]
    assert report.fusion_table(emotion.assign(fusion=False))["published CREMA-D"].isna().all()


def test_report_refuses_a_folder_without_metrics(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_predict_a_new_recording_with_the_run(audio_run, tmp_path, capsys):
    root, media = audio_run
    assert cli.main(["predict", str(media), "--run", str(root / "run"), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / f"{media.stem}.csv")
    probs = table.drop(columns="windows").to_numpy()
    assert probs.shape == (T + 1, 8) and np.allclose(probs.sum(1), 1, atol=0.01)
    assert np.allclose(probs[-1], probs[-2])  # the clip's prediction is the one after all T windows
    assert (tmp_path / f"{media.stem}.png").is_file() and media.stem in capsys.readouterr().out


def test_predict_averages_the_fold_models(audio_run):
    root, media = audio_run
    prediction = predict.predict_recording(media, root / "run")
    config = train.read_run_config(root / "run")
    data, present, _ = predict.embed_recording(media, config, 8)
    models = [train.load_fold_model(root / "run" / "checkpoints" / f"fold{k}.pt", 8, data.dims(), T) for k in (0, 1)]
    expected = np.mean([m(**data.inputs()).logits.softmax(1)[0].detach().numpy() for m in models], axis=0)
    assert present == "a" and np.allclose(prediction.fused, expected, atol=1e-6)


def test_predict_errors_are_one_line(audio_run, tmp_path):
    root, _ = audio_run
    with pytest.raises(MerError, match="does not exist"):
        predict.predict_recording(tmp_path / "missing.mp4", root / "run")
    with pytest.raises(MerError, match="not a `mer train` run folder"):
        predict.predict_recording(audio_run[1], tmp_path)


def test_real_ravdess_audio_end_to_end(real_data, tmp_path, capsys):
    """The 2 real RAVDESS actors (audio only): prepare, extract eGeMAPS, train audio MATER on 2 folds, report."""
    data = tmp_path / "data"
    assert cli.main(["data", "prepare", "ravdess", str(real_data / "ravdess" / "audio"), "--out", str(data)]) == 0
    assert cli.main(["extract", str(data), "--audio", "egemaps", "--video", "none", "--windows", "8",
                     "--workers", "2"]) == 0
    assert cli.main(["train", str(data), "--modalities", "a", "--folds", "all", "--epochs", "3", "--d-model", "16",
                     "--layers", "1", "--heads", "2", "--d-ff", "32", "--device", "cpu",
                     "--out", str(tmp_path / "run")]) == 0
    metrics = artifacts.read_json(tmp_path / "run" / "metrics.json")
    assert metrics["folds"] == [0, 1] and metrics["n_clips"] == 120 and metrics["data"]["dataset"] == "ravdess"
    assert cli.main(["report", str(tmp_path / "run")]) == 0
    results = pd.read_csv(tmp_path / "run" / "report" / "results.csv")
    assert results.loc[0, "accuracy"] == round(100 * metrics["accuracy_mean"], 1)
    assert "audio-egemaps-w0.5xT8" in capsys.readouterr().out
