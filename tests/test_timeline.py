"""Emotion timelines of whole recordings (mer_lib.stream, mer_lib.timeline, `mer predict`) on generated
phone- and webcam-like recordings: containers, rotation, variable frame rate, two faces, no-face and
silent stretches, audio only, video only, streaming; and the explorer widget over them (mer_lib.explorer),
tested through its state and view after its controls change, without a browser."""
from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mer_lib import artifacts, cli, explorer, media, predict, stream, timeline, train
from mer_lib.config import make_config
from mer_lib.data import manifest as mf
from mer_lib.data import synthetic
from mer_lib.errors import MerError
from mer_lib.features import store
from mer_lib.features.extract import ExtractConfig

T, WINDOW, FPS, RATE = 4, 0.5, 25, 44100
STORES = {"audio": ("egemaps", 88), "video": ("fer_minixception", 128)}


def write_data_dir(data_dir, layout: str = "fixed", n_actors: int = 4) -> None:
    """A prepared data folder with random eGeMAPS- and mini-Xception-shaped stores (a run needs only their
    provenance and sizes here: what it predicts does not matter, how the recording is cut does)."""
    rng = np.random.default_rng(0)
    classes = mf.classes("synthetic")
    rows = [{"id": f"{a:02d}-{label}", "dataset": "synthetic", "actor": a, "emotion": c, "label": label,
             "status": "ok", "has_audio": True, "has_video": True, "duration": T * WINDOW}
            for a in range(1, n_actors + 1) for label, c in enumerate(classes)]
    manifest = pd.DataFrame(rows).reindex(columns=mf.COLUMNS)
    artifacts.write_csv(data_dir / "manifest.csv", manifest)
    artifacts.write_csv(data_dir / "folds.csv", pd.DataFrame({"actor": range(1, n_actors + 1), "sex": "female",
                                                              "fold": [a // 2 for a in range(n_actors)]}))
    for modality, (name, dim) in STORES.items():
        config = ExtractConfig(modality, name, *((None, 1) if layout == "clip" else (WINDOW, T)), layout=layout)
        store.save_store(data_dir, config.name, store.EmbeddingStore(
            manifest["id"].tolist(), rng.normal(size=(len(rows), config.count, dim)).astype(np.float32),
            np.ones((len(rows), config.count), bool),
            {"extractor": name, "modality": modality, "window": config.window, "count": config.count,
             "frame_step": 1, "chip_size": 96, "openface_dir": None, "dim": dim, "layout": layout,
             **({"luma": True} if modality == "video" else {})}))  # as `mer extract` makes FER stores


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished two-fold audio-visual MATER run (T = 4 windows of 0.5 s)."""
    root = tmp_path_factory.mktemp("run")
    write_data_dir(root / "data")
    config = make_config("fast", modalities="av", d_model=16, heads=2, layers=1, d_ff=32, epochs=2, device="cpu")
    train.cross_validate(root / "data", config, root / "run")
    return root / "run"


def speaking(parts: list[tuple[str | None, float]], size=(320, 240)) -> tuple[np.ndarray, np.ndarray]:
    """Frames and mono audio of (emotion, seconds) parts: a synthetic actor speaking, or for None an empty
    background in silence."""
    frames, sound = [], []
    for emotion, seconds in parts:
        if emotion is None:
            frames.append(np.full((round(seconds * FPS), size[1], size[0], 3), 90, np.uint8))
            sound.append(np.zeros(round(seconds * RATE), np.float32))
        else:
            frames.append(synthetic.render_frames(emotion, 1, size=size, fps=FPS, duration=seconds))
            sound.append(synthetic.render_audio(emotion, 1, duration=seconds, sample_rate=RATE))
    return np.concatenate(frames), np.concatenate(sound)


def record(path, parts, **write) -> str:
    """A generated recording of `parts` (see `speaking`), written by media.write_av."""
    frames, sound = speaking(parts)
    return str(media.write_av(path, frames, FPS, sound, RATE, **write))


@pytest.fixture(scope="module")
def nine_seconds(tmp_path_factory) -> str:
    return record(tmp_path_factory.mktemp("media") / "talk.mp4", [("happy", 3.0), ("sad", 3.0), ("angry", 3.0)])


def follow(path, run_dir, **options) -> timeline.Timeline:
    return timeline.predict_timeline(path, run_dir, progress=False, **options)


def test_steps_slide_the_block_over_the_whole_recording(run_dir, nine_seconds):
    result = follow(nine_seconds, run_dir)
    table = result.table()
    assert len(table) == stream.Steps(WINDOW, T, WINDOW).count_in(9.0) == 15  # starts 0, 0.5, ..., 7.0
    np.testing.assert_allclose(table["start"], np.arange(15) * 0.5)
    np.testing.assert_allclose(table["end"] - table["start"], T * WINDOW)
    fused = table[[f"p_{c}" for c in result.classes]].to_numpy()
    assert np.allclose(fused.sum(1), 1, atol=1e-5) and (table["v_windows"] == T).all()
    assert result.present == "av" and "one face seen" in result.face
    coarse = follow(nine_seconds, run_dir, hop=1.5)
    assert coarse.starts.tolist() == [0.0, 1.5, 3.0, 4.5, 6.0]


def test_accuracy_against_known_segments_counts_blocks_inside_one(run_dir, nine_seconds):
    result = follow(nine_seconds, run_dir)
    truth = pd.DataFrame({"start": [0.0, 3.0, 6.0], "end": [3.0, 6.0, 9.0], "emotion": ["happy", "sad", "angry"]})
    scores = result.against(truth).set_index("head")
    assert scores.index.tolist() == ["fused", "audio", "video"] and (scores["steps"] == 9).all()
    inside = np.isin(result.starts, [0.0, 0.5, 1.0, 3.0, 3.5, 4.0, 6.0, 6.5, 7.0])
    table = result.table()[inside]
    expected = np.mean(table["emotion"].to_numpy() == np.repeat(["happy", "sad", "angry"], 3))
    assert scores.loc["fused", "accuracy"] == pytest.approx(expected)


def test_the_first_step_is_what_mer_predict_says_of_the_first_block(run_dir, nine_seconds):
    result = follow(nine_seconds, run_dir, silence_db=-np.inf)  # predict masks no silence
    assert np.abs(result.results[0].fused - predict.predict_recording(nine_seconds, run_dir).fused).max() < 1e-6


def test_streaming_holds_one_block_and_gives_the_same_steps(run_dir, nine_seconds):
    """A follower fed straight from the reader holds one block, and its steps are exactly those of
    predict_timeline, which decodes ahead in a thread."""
    run = stream.RunModels(run_dir)
    follower = stream.Follower(run, stream.Steps(WINDOW, T, WINDOW), "av")
    steps, held = [], []
    with pytest.raises(MerError, match="tracked in luma frames, this frame is RGB"):
        follower.push("video", np.zeros((240, 320, 3), np.uint8), 0.0)
    with stream.one_torch_thread(), media.Reader(nine_seconds, sample_rate=16000, colour=run.colour) as reader:
        for item in reader:
            steps += follower.push(*item)
            held.append((len(follower.sides["a"].buffer), len(follower.sides["v"].times), len(follower.cache)))
        steps += follower.finish(reader.duration)
    samples, frames, windows = np.max(held, axis=0)
    assert samples <= (T + 2) * WINDOW * 16000 and frames <= (T + 2) * WINDOW * FPS and windows <= T
    offline = follow(nine_seconds, run_dir)
    np.testing.assert_array_equal(np.array([s.fused for s in steps]), offline.fused)
    for m in run.modalities:
        np.testing.assert_array_equal(np.array([s.heads[m] for s in steps]), offline.head(m))


def test_no_face_and_silence_are_gaps_not_predictions(run_dir, tmp_path):
    path = record(tmp_path / "pause.mp4", [("happy", 3.0), (None, 4.0), ("sad", 3.0)])
    table = follow(path, run_dir).table()
    # blocks in the pause, from 0.5 s on: the tracker notices a face has gone at its next confirmation
    # (FaceTracker.detect_every = 10 frames, 0.4 s), so the pause's first window still counts the face
    inside = (table["start"] >= 3.5) & (table["end"] <= 7.0)
    assert inside.sum() == 4
    assert (table.loc[inside, "emotion"] == "").all() and table.loc[inside, "p_happy"].isna().all()
    assert (table.loc[inside, ["a_windows", "v_windows"]] == 0).all().all()
    assert (table.loc[~inside, "emotion"] != "").all()
    # a block with some voice keeps its quiet windows, as training clips kept their silent starts
    assert table.loc[table["start"] == 2.0, "a_windows"].item() == T  # speech in its first window only


def test_audio_only_and_video_only_recordings(run_dir, tmp_path):
    frames, sound = speaking([("angry", 3.0)])
    for path, present in [(media.write_audio(tmp_path / "voice.m4a", np.stack([sound, 0.5 * sound]), RATE), "a"),
                          (media.write_av(tmp_path / "mute.mp4", frames, FPS), "v")]:
        result = follow(path, run_dir)
        other = "v" if present == "a" else "a"
        assert result.present == present and len(result.results) == 3
        assert np.isnan(result.head(other)).all() and not np.isnan(result.fused).any()
        assert (result.table()[f"{other}_windows"] == 0).all()
    assert follow(tmp_path / "voice.m4a", run_dir).face == "no video"


@pytest.mark.parametrize("suffix, write", [(".mov", {"rotation": 90}), (".mkv", {"vfr": True}), (".webm", {})])
def test_phone_and_webcam_recordings_find_the_face_throughout(run_dir, tmp_path, suffix, write):
    frames, sound = speaking([("fearful", 3.0)])
    rate = 48000 if suffix == ".webm" else RATE  # Opus needs 48 kHz
    sound = media.resample(sound, RATE, rate)
    if write.get("rotation"):
        frames = np.rot90(frames, -1, axes=(1, 2))  # stored sideways, shown upright
    jitter = np.random.default_rng(0).uniform(0.02, 0.06, len(frames) - 1)
    times = np.cumsum(np.r_[0, jitter]) if write.get("vfr") else None
    path = media.write_av(tmp_path / f"phone{suffix}", frames, FPS, sound, rate, times=times,
                          rotation=write.get("rotation", 0))
    table = follow(path, run_dir).table()
    assert len(table) >= 2 and (table["v_windows"] == T).all() and (table["a_windows"] >= 2).all()


def test_two_faces_the_chosen_one_is_followed(run_dir, tmp_path):
    left, sound = speaking([("happy", 2.5)])
    right = synthetic.render_frames("sad", 2, size=(266, 200), fps=FPS, duration=2.5)
    frames = np.concatenate([left, np.pad(right, ((0, 0), (20, 20), (0, 0), (0, 0)), constant_values=90)], axis=2)
    path = media.write_av(tmp_path / "two.mp4", frames, FPS, sound, RATE)
    for face, side in [("largest", "left"), ("right", "right")]:
        result = follow(path, run_dir, face=face)
        centres = (result.track_boxes[:, 0] + result.track_boxes[:, 2]) / 2
        assert len(centres) == len(frames) and ((centres < 320) if side == "left" else (centres > 320)).all()
        assert result.face.startswith(f"the {face if face == 'largest' else 'rightmost'} of 2 faces")


def test_faces_followed_in_a_process_apart_give_the_same_timeline(run_dir, tmp_path):
    """timeline.pieces follows the faces of a file in another process (the default on two cores or more):
    the steps, the face track and what is said of the faces are those of following them here."""
    left, sound = speaking([("happy", 2.0), (None, 1.0), ("sad", 1.5)])
    right = synthetic.render_frames("sad", 2, size=(266, 200), fps=FPS, duration=len(left) / FPS)
    frames = np.concatenate([left, np.pad(right, ((0, 0), (20, 20), (0, 0), (0, 0)), constant_values=90)], axis=2)
    path = media.write_av(tmp_path / "two.mp4", frames, FPS, sound, RATE)
    apart, here = (follow(path, run_dir, faces_apart=on) for on in (True, False))
    np.testing.assert_array_equal(apart.fused, here.fused)
    np.testing.assert_array_equal(apart.track_boxes, here.track_boxes)
    np.testing.assert_array_equal(apart.track_times, here.track_times)
    assert apart.face == here.face and apart.face.startswith("the largest of 2 faces")


def test_audio_is_merged_at_most_some_seconds_ahead_of_the_faces():
    audio = [("audio", None, t) for t in np.arange(0, 10, 0.125)]  # times exact in binary: no rounding at 2 s
    faces = [("face", None, t) for t in np.arange(0, 9, 0.0625)]
    merged = list(stream.merge_by_time(audio, faces, 2.0))
    assert [m for m in merged if m[0] == "audio"] == audio and [m for m in merged if m[0] == "face"] == faces
    latest = {"audio": -np.inf, "face": -np.inf}
    for kind, _, time in merged:
        latest[kind] = time
        if kind == "face":  # all audio up to 2 s past this face came before it (while there is), and none later
            assert min(2.0, audio[-1][2] - time) - 0.125 < latest["audio"] - time <= 2.0


def test_mer_predict_writes_the_timeline_figure_and_annotated_video(run_dir, nine_seconds, tmp_path, capsys):
    assert cli.main(["predict", nine_seconds, "--run", str(run_dir), "--out", str(tmp_path), "--annotate"]) == 0
    out = capsys.readouterr().out
    assert "15 steps of 4 x 0.5 s every 0.5 s" in out and "face: the largest" in out
    table = pd.read_csv(tmp_path / "talk_timeline.csv")
    assert len(table) == 15 and {"p_happy", "p_a_happy", "p_v_happy", "a_windows", "v_windows"} <= set(table)
    assert (tmp_path / "talk_timeline.png").stat().st_size > 10_000
    annotated = media.probe(tmp_path / "talk_annotated.mp4")
    assert annotated.has_audio and annotated.n_frames == media.probe(nine_seconds).n_frames
    assert annotated.duration == pytest.approx(9.0, abs=0.1)


def test_stream_prints_each_step_as_it_completes(run_dir, nine_seconds, tmp_path, capsys):
    assert cli.main(["predict", nine_seconds, "--run", str(run_dir), "--out", str(tmp_path), "--stream",
                     "--hop", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().endswith(")")]
    assert len(lines) == 8 and lines[0].split()[0] == "0.00-" and "audio" in lines[0] and "video" in lines[0]
    streamed = pd.read_csv(tmp_path / "talk_timeline.csv")
    np.testing.assert_allclose(streamed["p_happy"], follow(nine_seconds, run_dir, hop=1.0).table()["p_happy"],
                               atol=1e-6)


def test_a_short_clip_keeps_the_per_window_output(run_dir, tmp_path, capsys):
    path = record(tmp_path / "short.mp4", [("calm", 2.2)])
    assert cli.main(["predict", path, "--run", str(run_dir), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "short.csv")
    assert table["windows"].tolist()[-1] == "clip" and len(table) == T + 1
    assert not (tmp_path / "short_timeline.csv").exists()
    assert cli.main(["predict", path, "--run", str(run_dir), "--out", str(tmp_path), "--folds", "1"]) == 0
    one_fold = pd.read_csv(tmp_path / "short_timeline.csv")  # --folds asks for a timeline: here one step
    expected = stream.RunModels(run_dir, folds=[1])
    assert len(one_fold) == 1 and len(expected.models) == 1
    np.testing.assert_allclose(one_fold["p_calm"], follow(path, expected).table()["p_calm"], atol=1e-6)


def test_clip_layout_runs_and_bad_input_are_one_line_errors(run_dir, nine_seconds, tmp_path, capsys):
    write_data_dir(tmp_path / "data", layout="clip")
    config = make_config("fast", modalities="a", d_model=16, heads=2, layers=1, d_ff=32, epochs=1, device="cpu")
    train.cross_validate(tmp_path / "data", config, tmp_path / "clip", layout="clip")
    assert cli.main(["predict", nine_seconds, "--run", str(tmp_path / "clip"), "--out", str(tmp_path)]) == 0
    assert "clip layout" in capsys.readouterr().out and (tmp_path / "talk.csv").is_file()
    with pytest.raises(MerError, match="clip layout"):
        follow(nine_seconds, tmp_path / "clip")
    with pytest.raises(MerError, match="hop between steps must be a positive"):
        follow(nine_seconds, run_dir, hop=-1.0)
    with pytest.raises(MerError, match="unknown face choice 'middle'"):
        follow(nine_seconds, run_dir, face="middle")
    with pytest.raises(MerError, match="has no fold 7"):
        stream.RunModels(run_dir, folds=[7])
    assert cli.main(["predict", str(tmp_path / "none.mp4"), "--run", str(run_dir)]) == 2
    assert cli.main(["predict", nine_seconds, "--run", str(run_dir), "--input-option", "framerate"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"mer: error: {tmp_path / 'none.mp4'} does not exist",
                      "mer: error: --input-option takes KEY=VALUE, got 'framerate'"]


def test_corpus_recording_joins_one_actors_clips(tmp_path):
    media_dir = tmp_path / "media"
    synthetic.synthesize(media_dir, actors=1, duration=1.0, limit=8, workers=1)  # actor 1: neutral and calm clips
    mf.prepare("synthetic", media_dir, tmp_path / "data", workers=1, quiet=True)
    path, truth = timeline.corpus_recording(tmp_path / "data", tmp_path / "joined.mp4",
                                            emotions=["calm", "neutral", "calm"])
    assert truth["emotion"].tolist() == ["calm", "neutral", "calm"] and truth["id"].nunique() == 3
    np.testing.assert_allclose(truth["start"], [0.0, 1.0, 2.0])
    info = media.probe(path)
    assert info.duration == pytest.approx(3.0, abs=0.05) and info.n_frames == 3 * synthetic.FPS
    with pytest.raises(MerError, match="actor 1 has 0 usable clips of happy, 1 asked"):
        timeline.corpus_recording(tmp_path / "data", tmp_path / "x.mp4", emotions=["happy"])


# ---- the explorer ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explore(run_dir, nine_seconds) -> explorer.Explorer:
    return explorer.Explorer(follow(nine_seconds, run_dir, details=True), stream.RunModels(run_dir))


def test_explorer_view_after_the_sliders_move(explore):
    explore.widget()
    explore.controls["step"].value = 4
    explore.controls["window"].value = 2
    assert explore.state == explorer.State(step=4, window=2)
    view = explore.view()
    assert (view.start, view.end) == (3.0, 3.5)  # step 4 starts at 2.0 s; its third window
    assert view.chip.shape == (96, 96) and view.patch.shape == (48, 64)  # grey: the run tracked faces in luma
    for m in "av":
        assert view.attention[m].shape == (T,) and view.attention[m].sum() == pytest.approx(1, abs=1e-5)
        assert view.present[m].dtype == bool and len(view.present[m]) == T
    np.testing.assert_allclose(view.probabilities["fused"], explore.timeline.results[4].fused, atol=1e-6)
    np.testing.assert_allclose(view.clean["fused"], view.probabilities["fused"])
    plt.close(explore.figure())


def test_explorer_switches_drop_a_modality_and_add_noise(explore):
    explore.widget()
    explore.controls["missing"].value = "v"
    view = explore.view()
    assert explore.state.missing == "v" and not view.present["v"].any()
    # late fusion answers from audio alone
    np.testing.assert_allclose(view.probabilities["fused"], view.probabilities["a"], atol=1e-6)
    assert np.isnan(view.probabilities["v"]).all()
    explore.controls["missing"].value = "none"
    explore.controls["noise"].value = "av"
    explore.controls["noisy"].value = T
    noisy = explore.view()
    assert not np.allclose(noisy.probabilities["fused"], noisy.clean["fused"])
    np.testing.assert_array_equal(explore.view().probabilities["fused"], noisy.probabilities["fused"])  # seeded noise
    explore.set(noise="none", noisy=1)


def test_explorer_refuses_what_it_cannot_show(explore, run_dir, tmp_path):
    with pytest.raises(MerError, match="cannot show window 4"):
        explore.set(window=T)
    with pytest.raises(MerError, match="needs a timeline computed with details"):
        explorer.Explorer(follow(explore.timeline.source, run_dir), stream.RunModels(run_dir))
    _, sound = speaking([("sad", 2.5)])
    voice = explorer.Explorer.from_recording(media.write_wav(tmp_path / "voice.wav", sound, RATE), run_dir)
    assert voice.modalities == "a" and voice.view().chip is None
    with pytest.raises(MerError, match="cannot show noise in 'v'"):
        voice.set(noise="v")


def test_make_bench_times_the_timeline_beside_decoding(run_dir, nine_seconds):
    from mer_lib import bench

    (row,) = bench.bench_timeline(nine_seconds, str(run_dir))
    assert row["steps"] == 15 and row["input"] == "9 s, 320x240, 25 fps"
    assert row["real_time_factor"] == pytest.approx(row["timeline_s"] / 9.0)
    for colour in ("rgb", "luma"):  # the run's FER store tracked faces in luma: both decodes are timed
        assert row[f"timeline_over_decode_{colour}"] == pytest.approx(row["timeline_s"] / row[f"decode_{colour}_s"])
    assert 0 < row["latency_ms_median"] <= row["latency_ms_max"] and row["peak_rss_mb"] > 0
    assert row["face_process_peak_rss_mb"] > 0  # the faces were followed apart
    jobs = [kwargs for group, _, kwargs in bench.plan(["timeline"], corpus=run_dir) if group == "timeline"]
    assert [kw["decode"] for kw in jobs] == [True, False] and jobs[1]["path"].endswith("talk_720p_600s.mp4")


def test_recordings_are_read_as_the_run_s_stores_were_made(run_dir, nine_seconds):
    """mer predict and the bench open a recording alike: the audio extractor's rate, the video store's
    frame step and frame colour."""
    run = stream.RunModels(run_dir)
    run.configs["v"] = replace(run.configs["v"], frame_step=2)
    with timeline.reader_for(nine_seconds, run) as reader:
        frames = [data for kind, data, _ in reader if kind == "video"]
    assert (reader.sample_rate, reader.frame_step, reader.colour) == (16000, 2, "luma")
    assert len(frames) == 9 * FPS // 2 + 1 and frames[0].ndim == 2


def test_the_timeline_runs_torch_on_one_thread_and_restores_it():
    import torch

    before = torch.get_num_threads()
    with stream.one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
