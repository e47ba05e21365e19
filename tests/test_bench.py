"""`make bench`'s training and complexity benchmarks on tiny sizes: the rows they return, group selection,
and reruns of one group keeping the others. No timings are asserted."""
from __future__ import annotations

import pytest

from mer_lib import artifacts, bench
from mer_lib.errors import MerError

TINY = {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32}
TRAIN_KEYS = {"stage", "modalities", "device", "input", "batch", "timed_batches", "params_millions",
              "seconds_per_epoch", "samples_per_s", "peak_mb"}
COMPLEXITY_KEYS = {"stage", "device", "input", "weights", "batch", "timed_steps", "epoch_clips", "params_millions",
                   "train_seconds_per_epoch", "infer_ms_per_clip", "peak_mb"}
TINY_WORKLOADS = {
    "cross_attention": TINY,
    "cross_attention_features": {"frame_size": 16},
    "cross_attention_frames": {"frame_size": 16, "spectrogram_size": (32, 32), "d_model": 16, "d_embedding": 16},
    "mater": TINY,
    "lstm": TINY,
    "jca": {"d_model": 16},
}


@pytest.mark.parametrize("model, modalities", [("mater", "av"), ("mater", "a"), ("lstm", "v")])
def test_bench_train_rows(model, modalities):
    rows = bench.bench_train(model, modalities, clips=24, batches=1, **TINY | {"batch_size": 8})
    assert len(rows) == 1 and set(rows[0]) == TRAIN_KEYS
    row = rows[0]
    assert row["modalities"] == modalities and row["timed_batches"] == 1 and row["batch"] == 8
    assert row["seconds_per_epoch"] > 0 and row["samples_per_s"] > 0 and row["params_millions"] > 0


def test_bench_train_without_batches_times_a_whole_epoch():
    row = bench.bench_train("mater", "v", clips=12, **TINY | {"batch_size": 8})[0]
    assert row["timed_batches"] == 2


@pytest.mark.parametrize("workload", list(bench.WORKLOADS))
def test_bench_complexity_rows(workload):
    rows = bench.bench_complexity(workload, batch=2, budget_s=0, **TINY_WORKLOADS[workload])
    assert len(rows) == 1 and set(rows[0]) == COMPLEXITY_KEYS
    row = rows[0]
    assert row["timed_steps"] == 1 and row["train_seconds_per_epoch"] > 0 and row["infer_ms_per_clip"] > 0
    assert row["weights"] == ("random init" if workload.endswith("frames") else "")


def test_synthetic_clips_have_only_the_chosen_modalities():
    data = bench.synthetic_clips(5, "a")
    assert data.audio.shape == (5, bench.WINDOWS, bench.EMBEDDING) and data.video is None
    assert data.audio_mask.all() and len(data) == 5


def test_parse_groups_orders_and_rejects_unknown_names():
    assert bench.parse_groups("complexity, train") == ["train", "complexity"]
    with pytest.raises(MerError, match="unknown benchmark group gpu"):
        bench.parse_groups("train,gpu")
    with pytest.raises(MerError, match="unknown benchmark group"):
        bench.parse_groups(" , ")


def test_plan_runs_each_model_on_each_device(tmp_path):
    jobs = bench.plan(["train", "complexity"], corpus=tmp_path)
    train_jobs = [kwargs for group, _, kwargs in jobs if group == "train"]
    assert len(train_jobs) == 6 * len(bench.devices())
    assert {kw["workload"] for group, _, kw in jobs if group == "complexity"} == set(bench.WORKLOADS)


def test_summarise_averages_files_of_a_kind_and_keeps_settings_apart():
    rows = [{"stage": "decode", "input": "a.mp4", "size": "2x2", "frames": 3, "rate": 1.0},
            {"stage": "decode", "input": "b.mp4", "size": "2x2", "frames": 5, "rate": 3.0},
            {"stage": "train", "input": "12 clips", "modalities": "a", "rate": 1.0},
            {"stage": "train", "input": "12 clips", "modalities": "v", "rate": 2.0}]
    merged = bench.summarise(rows)
    assert merged[0] == {"stage": "decode", "input": "2 x mp4", "size": "2x2", "rate": 2.0}
    assert list(merged[0]) == ["stage", "input", "size", "rate"]
    assert [r["modalities"] for r in merged[1:]] == ["a", "v"]


def _row(**kw):
    return [{"stage": "s", "input": "i", **kw}]


def test_rerunning_one_group_keeps_the_other_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "in_fresh_process", lambda fn, kwargs: (fn(**kwargs), 1.0))
    bench.run(tmp_path, tmp_path, jobs=[("decode", _row, {"rate": 1.0}), ("train", _row, {"rate": 2.0})])
    bench.run(tmp_path, tmp_path, jobs=[("train", _row, {"rate": 3.0})])
    saved = artifacts.read_json(tmp_path / "bench.json")
    assert [(r["group"], r["rate"]) for r in saved["results"]] == [("decode", 1.0), ("train", 3.0)]
    assert list(saved["results"][0]) == ["group", "stage", "input", "rate"]
    assert set(saved["meta"]["groups"]) == {"decode", "train"}
    text = (tmp_path / "bench.md").read_text()
    assert "## decode" in text and "## train" in text and "Models as `mer train --preset paper`" in text


def test_plan_measures_dask_extraction_and_the_notebook_03_grid(tmp_path):
    jobs = bench.plan(["dask"], corpus=tmp_path / "media")
    assert [(group, fn.__name__) for group, fn, _ in jobs] == [("dask", "bench_dask_extract"),
                                                                ("dask", "bench_dask_grid")]
    assert all(kwargs == {"corpus_dir": tmp_path} or kwargs == {"data_dir": tmp_path} for _, _, kwargs in jobs)


def test_independent_processes_rate_and_a_lead_too_short(tmp_path, tone_clips):
    from mer_lib.features import extract

    clips = [{"id": p.stem, "audio_path": str(p)} for p in tone_clips(tmp_path, actors=(1,), emotions=(1, 3))]
    config = extract.with_extractor(extract.ExtractConfig("audio", "logmel", 0.5, 2))
    assert bench._independent_rate(config, clips, 2, lead=10.0) > 0
    with pytest.raises(MerError, match="still loading its models"):
        bench._independent_rate(config, clips, 1, lead=0.0)
