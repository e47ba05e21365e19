"""`mer report` tables beside the papers, and `mer predict` on a new recording."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from mer_lib import artifacts, cli, predict, report, run_folder, train
from mer_lib.config import TrainConfig, make_config
from mer_lib.data import manifest as mf
from mer_lib.data import synthetic
from mer_lib.errors import MerError
from mer_lib.features import store
from mer_lib.features.extract import ExtractConfig, embed_audio
from mer_lib.models import registry

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
    config = make_config("fast", modalities="a", d_model=16, heads=2, layers=1, d_ff=32, epochs=3,
                               device="cpu")
    train.cross_validate(root / "data", config, root / "run")
    return root, media


def test_report_places_runs_beside_published_numbers(audio_run, tmp_path, capsys):
    root, _ = audio_run
    tables = report.report([root / "run"], out=tmp_path / "report")
    row = tables["results"].iloc[0]
    assert (row["dataset"], row["model"], row["modalities"], row["windows"], row["window"]) == \
        (report.EMBEDDED, "mater", "a", T, WINDOW)
    assert row["comparable"] == "no: embedded corpus" and pd.isna(row["published"])
    assert (row["validation"], row["folds"], row["actors"]) == ("actors", 2, 4)
    metrics = artifacts.read_json(root / "run" / "metrics.json")
    assert row["accuracy"] == round(100 * metrics["accuracy_mean"], 1)
    t1 = tables["table1"].set_index(["dataset", "windows", "window", "pe", "mhsa"])
    assert t1.loc[("ravdess", 8, 0.5, True, True), "published"] == 76.3
    assert t1.loc[("cremad", 12, 0.25, False, False), "published"] == 58.3
    t3 = tables["table3"]
    human = t3[(t3["dataset"] == "ravdess") & (t3["attention"] == "human raters")].iloc[0]
    assert (human["a published"], human["v published"], human["av published"]) == (62.0, 72.0, 80.0)
    ours = t3[t3["dataset"] == report.EMBEDDED].iloc[0]
    assert ours["a"] == row["accuracy"] and pd.isna(ours["av"]) and pd.isna(ours["a published"])
    assert tables["per_class"].columns[1] == f"run ({report.EMBEDDED})"
    assert tables["baselines"]["dataset"].eq(report.EMBEDDED).all()
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "confusion_run.png").is_file()
    assert "76.3" in capsys.readouterr().out


def results(*rows: dict) -> pd.DataFrame:
    """A results table of hand-made runs: each a MATER run comparable with Table 1 unless overridden."""
    base = {"run": "x", "dataset": "ravdess", "model": "mater", "modalities": "av", "pe": True, "mhsa": True,
            "fusion": True, "vs": True, "vc": True, "maps": False, "loss": "softmax", "metric_loss": "with_softmax",
            "train_noise": None, "windows": 8, "window": 0.5, "layout": "fixed", "audio": "audio-vggish-w0.5xT8",
            "video": "video-vggm_fer-w0.5xT8", "validation": "actors", "folds": 12, "actors": 24,
            "fold set": "12 folds, 24 actors (0)", "accuracy": 70.0, "std": 2.0}
    table = [base | row for row in rows]
    for row in table:
        row["comparable"] = report.comparability(row)
        row["published"] = report.published_figure(row) if row["comparable"] == report.COMPARABLE else None
    return pd.DataFrame(table)


def test_a_published_number_sits_only_beside_a_comparable_run():
    table = results({"run": "paper"}, {"run": "embedded", "dataset": report.EMBEDDED},
                    {"run": "voiced", "layout": "voiced"}, {"run": "dev", "folds": 6, "actors": 12},
                    {"run": "noisy", "train_noise": "a"},
                    {"run": "short", "windows": 16, "window": 0.25, "mhsa": False},
                    {"run": "cremad", "dataset": "cremad", "windows": 6, "folds": 10, "actors": 91, "pe": False},
                    {"run": "lstm", "model": "lstm"}).set_index("run")
    assert table.loc["paper", "comparable"] == "yes" and table.loc["paper", "published"] == 76.3
    assert table.loc["cremad", "comparable"] == "yes" and table.loc["cremad", "published"] == 65.0
    assert table.loc["embedded", "comparable"] == "no: embedded corpus"
    assert "voiced windows" in table.loc["voiced", "comparable"]
    assert "tested 6 folds of 12 actors, the paper 12 of 24" in table.loc["dev", "comparable"]
    assert "trained with noise in a" in table.loc["noisy", "comparable"]
    assert "no published figure for av with 16 x 0.25 s windows, PE on, MHSA off" in table.loc["short", "comparable"]
    assert table.loc["lstm", "comparable"] == "no: no paper publishes LSTM baseline on ravdess"  # the registry's label
    assert set(report.PAPER_FOLDS) <= set(registry.NETWORKS)
    assert table.drop(index=["paper", "cremad"])["published"].isna().all()


def test_table1_keeps_published_rows_and_gives_other_runs_their_own():
    t1 = report.table1(results({"run": "paper", "pe": False}, {"run": "dev", "pe": False, "folds": 6, "actors": 12},
                               {"run": "embedded", "dataset": report.EMBEDDED}))
    row = t1[t1["run"] == "paper"].iloc[0]
    assert (row["windows"], row["pe"], row["mhsa"], row["ours"], row["published"]) == (8, False, True, 70.0, 75.2)
    assert row["features"] == "audio-vggish-w0.5xT8, video-vggm_fer-w0.5xT8" and row["validation"] == "actors"
    for name in ("dev", "embedded"):
        other = t1[t1["run"] == name].iloc[0]
        assert pd.isna(other["published"]) and other["comparable"].startswith("no: ")
    assert t1[t1["dataset"] == "ravdess"]["published"].notna().sum() == 6  # every published row stays
    assert pd.isna(t1.set_index(["dataset", "windows", "pe", "mhsa"]).loc[("cremad", 6, True, True), "ours"])


def test_table3_joins_runs_of_the_same_stores_and_folds():
    vggish, egemaps = "audio-vggish-w0.5xT8", "audio-egemaps-w0.5xT8"
    t3 = report.table3(results(
        {"run": "av", "accuracy": 76.0}, {"run": "a", "modalities": "a", "video": None, "accuracy": 59.0},
        {"run": "v", "modalities": "v", "audio": None, "accuracy": 58.0},
        {"run": "a-egemaps", "modalities": "a", "audio": egemaps, "video": None, "accuracy": 40.0},
        {"run": "av-16", "windows": 16, "window": 0.25, "audio": vggish.replace("w0.5xT8", "w0.25xT16"),
         "video": "video-vggm_fer-w0.25xT16"}))
    paper = t3[t3["runs"] == "av, a, v"].iloc[0]
    assert (paper["a"], paper["v"], paper["av"]) == (59.0, 58.0, 76.0)
    assert (paper["a published"], paper["av published"], paper["comparable"]) == (59.2, 76.3, "yes")
    egemaps_row = t3[t3["runs"] == "a-egemaps"].iloc[0]  # comparable too: the features are named, not barred
    assert egemaps_row["a published"] == 59.2 and egemaps_row["features"] == egemaps
    longer = t3[t3["runs"] == "av-16"].iloc[0]  # Table 1 has 16 x 0.25 s, Table 3 does not
    assert pd.isna(longer["av published"]) and "Table 3: 8 x 0.5 s" in longer["comparable"]


def test_the_cross_modal_model_is_comparable_on_backbone_maps_with_every_module_and_the_papers_loss():
    paper = {"model": "cross_attention", "maps": True, "windows": 6, "window": 1.0, "loss": "triplet",
             "metric_loss": "alone", "folds": 10, "actors": 24, "video": "video-r3d_18_maps112-w1xT6"}
    table = results(paper | {"run": "full"}, paper | {"run": "emotion", "loss": "emotion"},
                    paper | {"run": "AT", "modalities": "a"}, paper | {"run": "VS", "modalities": "v", "vc": False,
                                                                      "mhsa": False},
                    paper | {"run": "windows", "maps": False}, paper | {"run": "softmax", "loss": "softmax"},
                    paper | {"run": "summed", "metric_loss": "with_softmax"},
                    paper | {"run": "no-validation", "validation": "none"},
                    paper | {"run": "twelve-folds", "folds": 12}).set_index("run")
    assert table.loc[["full", "emotion", "AT", "VS"], "published"].tolist() == [87.85, 89.25, 76.42, 77.54]
    assert "AT + VT with the triplet loss (VS and VC need the cached backbone maps)" in \
        table.loc["windows", "comparable"]
    assert "AT + VS + VC + VT with the softmax loss" in table.loc["softmax", "comparable"]
    assert "the paper trains it alone" in table.loc["summed", "comparable"]
    assert "no validation actors" in table.loc["no-validation", "comparable"]
    assert "tested 12 folds of 24 actors, the paper 10 of 24" in table.loc["twelve-folds", "comparable"]
    mocanu = report.mocanu_tables(table.reset_index())
    beside = mocanu.dropna(subset=["ours", "published"])
    assert sorted(beside["run"]) == ["AT", "VS", "emotion", "full"]
    cremad = mocanu[mocanu["dataset"] == "cremad"]
    assert len(cremad) == 6 and cremad["ours"].isna().all()
    fusion = report.fusion_table(table.reset_index()).set_index("run")
    assert fusion.loc["full", "published"] == 87.85 and pd.isna(fusion.loc["windows", "published"])


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
    config = run_folder.read_run_config(root / "run")
    data, present, _ = predict.embed_recording(media, config, 8)
    checkpoints = root / "run" / "checkpoints"
    models = [run_folder.load_fold_model(checkpoints / f"fold{k}.pt", 8, data.dims(), T) for k in (0, 1)]
    expected = np.mean([m(**data.inputs()).logits.softmax(1)[0].detach().numpy() for m in models], axis=0)
    assert present == "a" and np.allclose(prediction.fused, expected, atol=1e-6)


def test_predict_errors_are_one_line(audio_run, tmp_path):
    root, _ = audio_run
    with pytest.raises(MerError, match="does not exist"):
        predict.predict_recording(tmp_path / "missing.mp4", root / "run")
    with pytest.raises(MerError, match="not a `mer train` run folder"):
        predict.predict_recording(audio_run[1], tmp_path)


def test_a_run_folder_copied_elsewhere_loads_and_predicts_without_its_data_folder(audio_run, tmp_path, capsys):
    root, media = audio_run
    shutil.copytree(root / "data", tmp_path / "data")
    config = make_config("fast", modalities="a", d_model=16, heads=2, layers=1, d_ff=32, epochs=1, device="cpu")
    train.cross_validate(tmp_path / "data", config, tmp_path / "run")
    before = predict.predict_recording(media, tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "elsewhere" / "run")
    shutil.rmtree(tmp_path / "data")
    shutil.rmtree(tmp_path / "run")
    shared = tmp_path / "elsewhere" / "run"
    inputs = run_folder.read_run_config(shared)["inputs"]
    assert inputs["classes"] == list(mf.classes("synthetic")) and inputs["n_windows"] == T
    assert inputs["stores"]["audio"]["extractor"] == "egemaps" and "window_starts" not in inputs["stores"]["audio"]
    assert inputs["model"]["kind"] == "mater" and inputs["model"]["config"]["heads"] == 2
    assert set(run_folder.fold_models(shared)) == {0, 1}
    assert run_folder.load_fold_model(shared / "checkpoints" / "fold0.pt").config.d_model == 16
    after = predict.predict_recording(media, shared)
    assert np.allclose(before.fused, after.fused) and np.allclose(before.incremental, after.incremental)
    assert cli.main(["predict", str(media), "--run", str(shared)]) == 0
    assert (shared / "predict" / f"{media.stem}.csv").is_file()


def test_a_run_folder_written_before_the_record_loads_beside_its_data(audio_run, tmp_path):
    root, media = audio_run
    old = tmp_path / "old"
    shutil.copytree(root / "run", old)
    saved = run_folder.read_run_config(old)
    (old / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in saved.items() if k != "inputs"}, sort_keys=False))
    with pytest.raises(MerError, match="trained before run folders recorded their inputs: .* rerun"):
        run_folder.fold_models(old)
    assert set(run_folder.load_trained(old).models) == {0, 1}  # the data folder gives the sizes, as before
    assert predict.predict_recording(media, old).emotion in mf.classes("synthetic")  # provenance from the data
    config = TrainConfig(**saved["train"])
    train.cross_validate(saved["data"]["data_dir"], config, old)  # the migration: finished folds are reused
    assert run_folder.read_run_config(old)["inputs"] == saved["inputs"] and set(run_folder.fold_models(old)) == {0, 1}


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
