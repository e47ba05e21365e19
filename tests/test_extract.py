"""`mer extract`: stores from real media, failures recorded, interrupted runs resumed."""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from mer_lib import cli, media, predict, weights
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError
from mer_lib.features import extract, store


@pytest.fixture()
def cremad_dir(real_data, tmp_path):
    """The 6 real CREMA-D FLV clips (video with audio), prepared."""
    root = tmp_path / "raw" / "VideoFlash"
    shutil.copytree(real_data / "cremad" / "VideoFlash", root)
    mf.prepare("cremad", tmp_path / "raw", tmp_path / "data", quiet=True)
    return tmp_path / "data"


def test_real_cremad_faces_and_audio(cremad_dir):
    paths = extract.extract(cremad_dir, audio="egemaps", video="fer_minixception", window=0.5, count=6, workers=1)
    video = store.load_store(cremad_dir, "video")
    audio = store.load_store(cremad_dir, "audio")
    assert paths["video"].is_file() and video.X.shape == (6, 6, 128) and not video.meta["failures"]
    assert audio.X.shape == (6, 6, 88) and audio.meta["dim"] == 88
    present = video.mask & audio.mask
    assert present[:, :4].all()  # the clips last 2-3 s: at least 4 windows of 0.5 s
    norms = np.linalg.norm(video.X[video.mask], axis=-1)
    assert np.allclose(norms, 1, atol=1e-5) and (video.X[~video.mask] == 0).all()
    # the FER network sees grey only: faces were tracked in the frames' luma, and the store says so
    assert video.meta["luma"] is True and "luma" not in audio.meta


def test_luma_and_rgb_frames_give_nearly_the_same_window_embeddings(cremad_dir):
    """The luma path changes how frames are decoded, not what the windows mean (cosine of l2-normalised means)."""
    config = extract.with_extractor(extract.ExtractConfig("video", "fer_minixception", 0.5, 6, luma=True))
    clip = mf.load_manifest(cremad_dir).iloc[0].to_dict()
    (luma, mask, _), (rgb, _, _) = (extract.embedder("video")(clip, c) for c in (config, replace(config, luma=False)))
    cosine = (luma * rgb).sum(axis=-1)[mask]
    assert cosine.min() > 0.995, cosine
    assert extract.settings(replace(config, luma=False)) == {k: v for k, v in extract.settings(config).items()
                                                            if k != "luma"}



def prepare_four_ravdess_clips(real_data, tmp_path) -> None:
    """A prepared data folder (tmp_path / "data") of the first four real RAVDESS clips of actor 01."""
    root = tmp_path / "raw" / "Actor_01"
    root.mkdir(parents=True)
    for wav in sorted((real_data / "ravdess" / "audio" / "Actor_01").glob("*.wav"))[:4]:
        shutil.copy(wav, root)
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)

def test_real_ravdess_audio_window_counts(real_data, tmp_path):
    prepare_four_ravdess_clips(real_data, tmp_path)
    extract.extract(tmp_path / "data", audio="logmel", video=None, window=0.25, count=16, workers=1)
    audio = store.load_store(tmp_path / "data", "audio", window=0.25)
    durations = mf.load_manifest(tmp_path / "data").set_index("id").loc[audio.ids, "duration"].to_numpy()
    assert audio.X.shape == (4, 16, 128)
    expected = np.minimum(16, np.floor(durations / 0.25 + 0.5)).astype(int)
    assert np.array_equal(audio.mask.sum(1), expected)


def test_corrupt_clip_recorded_retried_by_a_rerun_or_kept_on_request(cremad_dir, monkeypatch, capsys):
    table = mf.load_manifest(cremad_dir)
    broken = table.iloc[2]["audio_path"]
    with open(broken, "r+b") as handle:  # damage one clip after prepare, as a disk error would
        handle.truncate(600)
    extract.extract(cremad_dir, audio="logmel", video=None, workers=1)
    audio = store.load_store(cremad_dir, "audio")
    assert len(audio.ids) == 5 and list(audio.meta["failures"]) == [table.iloc[2]["id"]]
    capsys.readouterr()
    real_work, calls = extract._work, []
    monkeypatch.setattr(extract, "_work", lambda clip, *a: (calls.append(clip["id"]), real_work(clip, *a)))
    command = ["extract", str(cremad_dir), "--video", "none", "--audio", "logmel", "--workers", "1"]
    assert cli.main(command) == 0
    assert calls == [table.iloc[2]["id"]] and "5 of 6 clips already done, retrying 1" in capsys.readouterr().out
    assert cli.main(command + ["--skip-failed"]) == 0
    assert len(calls) == 1 and "up to date" in capsys.readouterr().out


def test_interrupted_run_keeps_finished_clips(cremad_dir, monkeypatch):
    real_work, done = extract._work, []

    def crash_after_two(clip, *args):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(clip["id"])
        return real_work(clip, *args)

    monkeypatch.setattr(extract, "_work", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract.extract(cremad_dir, audio="logmel", video=None, workers=1)
    monkeypatch.setattr(extract, "_work", lambda clip, *a: (done.append(clip["id"]), real_work(clip, *a))[1])
    extract.extract(cremad_dir, audio="logmel", video=None, workers=1)
    assert len(done) == 6 and len(set(done)) == 6  # the two finished clips were not redone
    assert len(store.load_store(cremad_dir, "audio").ids) == 6


def test_video_without_face_is_a_recorded_failure(tmp_path):

    grey = np.full((20, 64, 64, 3), 128, np.uint8)
    for actor in (1, 2):
        media.write_av(tmp_path / "raw" / f"02-01-03-01-01-01-{actor:02d}.mp4", grey, 10)
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    with pytest.raises(MerError, match="every clip failed.*no face found"):
        extract.extract(tmp_path / "data", audio=None, video="landmarks", workers=1)
    with pytest.raises(MerError, match="nothing to extract"):
        extract.extract(tmp_path / "data", audio=None, video=None)
    with pytest.raises(MerError, match="unknown video extractor"):
        extract.extract(tmp_path / "data", audio=None, video="resnet", workers=1)


def test_voiced_layout_places_audio_and_video_windows_over_the_speech(cremad_dir, capsys):
    assert cli.main(["extract", str(cremad_dir), "--audio", "egemaps", "--video", "landmarks", "--window", "0.5",
                     "--windows", "4", "--layout", "voiced", "--frame-step", "3", "--workers", "1"]) == 0
    assert "voiced layout" in capsys.readouterr().out
    audio = store.load_store(cremad_dir, "audio", layout="voiced")
    video = store.load_store(cremad_dir, "video", layout="voiced")
    assert (audio.meta["name"], video.meta["name"]) == ("audio-egemaps-w0.5xT4-voiced",
                                                        "video-landmarks-w0.5xT4-voiced")
    assert audio.meta["layout"] == video.meta["layout"] == "voiced" and audio.mask.all() and video.mask.all()
    durations = mf.load_manifest(cremad_dir).set_index("id")["duration"]
    for clip in audio.ids:
        starts = np.array(audio.meta["window_starts"][clip])
        assert np.allclose(np.diff(starts), np.diff(starts)[0], atol=2e-3)
        assert starts[-1] + 0.5 <= durations[clip] + 0.1  # the FLV audio track runs a little past the video
        # the video windows follow the speech of the clip's own audio track, within the video's duration
        seen = np.array(video.meta["window_starts"][clip])
        assert seen[0] == pytest.approx(starts[0], abs=0.02) and seen[-1] + 0.5 <= durations[clip] + 1e-3
    assert max(s[0] for s in audio.meta["window_starts"].values()) > 0.1  # not simply from 0 s
    run = {"data": {"data_dir": str(cremad_dir), "stores": {"audio": audio.meta["name"]}}}  # a run without the record
    config, _ = predict.extract_config(run, "audio")  # `mer predict` places windows alike
    clip = mf.load_manifest(cremad_dir).iloc[0]
    notes = extract.embed_audio({"audio_path": clip["audio_path"]}, config)[2]
    assert config.layout == "voiced" and notes["starts"] == audio.meta["window_starts"][clip["id"]]
    with pytest.raises(MerError, match="no video embeddings with the fixed window layout"):
        store.load_store(cremad_dir, "video")


def test_voiced_windows_skip_ravdess_leading_silence(real_data, tmp_path):
    prepare_four_ravdess_clips(real_data, tmp_path)
    extract.extract(tmp_path / "data", audio="logmel", video=None, window=0.5, count=8, workers=1, layout="voiced")
    audio = store.load_store(tmp_path / "data", "audio", layout="voiced")
    durations = mf.load_manifest(tmp_path / "data").set_index("id")["duration"]
    for clip, starts in audio.meta["window_starts"].items():
        assert starts[0] > 0.5 and starts[-1] + 0.5 < durations[clip] - 0.3  # RAVDESS: ~1 s of silence each side
    assert audio.X.shape == (4, 8, 128) and audio.mask.all()


def test_clip_layout_is_one_embedding_of_the_whole_clip(cremad_dir):
    from mer_lib.features.audio import EGeMAPS

    assert cli.main(["extract", str(cremad_dir), "--audio", "egemaps", "--video", "none", "--window", "0.5",
                     "--windows", "8", "--layout", "clip", "--workers", "1"]) == 0
    audio = store.load_store(cremad_dir, "audio", layout="clip")
    assert audio.meta["name"] == "audio-egemaps-clip" and audio.X.shape == (6, 1, 88) and audio.mask.all()
    assert (audio.meta["window"], audio.meta["count"], audio.meta["layout"]) == (None, 1, "clip")
    assert all(starts == [0.0] for starts in audio.meta["window_starts"].values())
    path = mf.load_manifest(cremad_dir).set_index("id").loc[audio.ids[0], "audio_path"]
    signal, rate = media.read_audio(path, sample_rate=16000)
    whole = EGeMAPS().describe(signal[None], len(signal) / rate)[0]
    np.testing.assert_allclose(audio.X[0, 0], whole / np.linalg.norm(whole), atol=1e-5)


def _extract_logmel(data_dir, *extra):
    """`mer extract` of 2 log-mel windows of 0.5 s per clip (fast, no weights); its exit status."""
    return cli.main(["extract", str(data_dir), "--audio", "logmel", "--video", "none", "--window", "0.5",
                     "--windows", "2", "--workers", "1", *extra])


def test_clip_results_are_keyed_by_media_and_only_new_or_changed_clips_are_computed(tmp_path, tone_clips, capsys):
    clips = tone_clips(tmp_path / "raw", actors=(1, 2), emotions=(1, 3))
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    data = tmp_path / "data"
    partial = data / "embeddings" / extract.PARTIAL
    stale = [partial / "audio-logmel-w0.5xT2-0123456789", partial / "audio-logmel-w0.5xT2-abcdef0123"]
    for folder in stale:  # results of other settings, and of the old cache keyed by clip ids
        folder.mkdir(parents=True)
        (folder / "03-01-01-01-01-01-01.npz").write_bytes(b"stale")
    assert _extract_logmel(data) == 0
    assert "0 of 8 clips already done" in capsys.readouterr().out
    assert not any(folder.exists() for folder in stale)
    before = store.load_store(data, "audio")
    # the same name, other media: a replaced recording is computed again, and only it
    signal, rate = media.read_audio(clips[0])
    media.write_wav(clips[0], signal[::-1].copy(), rate)
    tone_clips(tmp_path / "raw", actors=(3,), emotions=(1,))  # and two clips added
    mf.prepare("ravdess", tmp_path / "raw", data, quiet=True)
    assert _extract_logmel(data) == 0
    assert "7 of 10 clips already done" in capsys.readouterr().out
    after = store.load_store(data, "audio")
    changed = before.ids[0]
    assert len(after.ids) == 10 and not np.allclose(after.select([changed]).X, before.select([changed]).X)
    np.testing.assert_array_equal(after.select(before.ids[1:]).X, before.select(before.ids[1:]).X)
    (folder,) = partial.iterdir()  # one folder of results, one file per clip: the replaced result is gone
    assert len(list(folder.iterdir())) == 10
    assert _extract_logmel(data) == 0 and "up to date" in capsys.readouterr().out


def test_setup_failures_are_found_once_and_never_cached(tmp_path, tone_clips, monkeypatch, capsys):
    import torch

    from mer_lib.features.audio import VGGishNet

    tone_clips(tmp_path / "raw", actors=(1, 2), emotions=(1,), repetitions=(1,))
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    monkeypatch.setenv("MER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MER_WEIGHTS_VGGISH", raising=False)
    command = ["extract", str(tmp_path / "data"), "--audio", "vggish", "--video", "none", "--windows", "2",
               "--workers", "1"]
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mer weights fetch vggish" in err and "MER_WEIGHTS_VGGISH" in err
    assert not (tmp_path / "data" / "embeddings").exists()  # nothing was tried, so nothing is cached
    torch.save(VGGishNet().state_dict(), tmp_path / "vggish.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "vggish.pth"))  # the advice, followed
    assert cli.main(command) == 0
    assert "0 of 2 clips already done" in capsys.readouterr().out
    vggish = store.load_store(tmp_path / "data", "audio")
    assert len(vggish.ids) == 2 and vggish.meta["weights_sha256"] == weights.sha256_file(tmp_path / "vggish.pth")
    torch.save(VGGishNet().state_dict(), tmp_path / "other.pth")  # other weights: other embeddings
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "other.pth"))
    assert cli.main(command) == 0 and "0 of 2 clips already done" in capsys.readouterr().out


@pytest.mark.parametrize("layout,rows", [("fixed", 8), ("voiced", 8), ("spread", 8), ("clip", 1)])
def test_audio_extractors_embed_every_layout(layout, rows):
    from mer_lib.features.audio import LogMel

    rate = 16000
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(2 * rate) / rate)
    signal = np.concatenate([1e-4 * rng.standard_normal(rate), tone, 1e-4 * rng.standard_normal(rate)])
    extractor = LogMel()
    X, mask, plan = extractor.embed_planned(signal.astype(np.float32), 0.5, 8, layout)
    assert X.shape == (rows, 128) and mask.all() and len(plan.starts) == rows
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    first = signal[int(round(plan.starts[0] * rate)):][:int(round(plan.window * rate))]
    expected = extractor.describe(first[None].astype(np.float32), plan.window)[0]
    np.testing.assert_allclose(X[0], expected / np.linalg.norm(expected), atol=1e-4)
    if layout == "voiced":  # every window lies on the tone
        assert plan.starts[0] == pytest.approx(1.0, abs=0.03) and plan.ends[-1] == pytest.approx(3.0, abs=0.03)
