"""Subject-disjoint folds and time windows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_lib.data import folds, windows
from mer_lib.errors import MerError
from mer_lib.features.pooling import pool_windows


def ravdess_actors(n=24):
    return pd.DataFrame({"actor": range(1, n + 1), "sex": ["male" if a % 2 else "female" for a in range(1, n + 1)]})


def test_mater_ravdess_folds_are_male_female_pairs():
    table = folds.make_folds(ravdess_actors(), "mater", "ravdess")
    assert table["fold"].nunique() == 12
    for _, group in table.groupby("fold"):
        assert sorted(group["sex"]) == ["female", "male"]
        assert group["actor"].max() - group["actor"].min() == 1


def test_mater_cremad_ten_balanced_folds():
    rng = np.random.default_rng(0)
    actors = pd.DataFrame({"actor": range(1001, 1092), "sex": rng.choice(["male", "female"], 91)})
    table = folds.make_folds(actors, "mater", "cremad")
    sizes = table.groupby("fold").size()
    assert len(sizes) == 10 and sizes.max() - sizes.min() <= 1
    males = table[table["sex"] == "male"].groupby("fold").size()
    assert males.max() - males.min() <= 1
    assert table.equals(folds.make_folds(actors.sample(frac=1, random_state=1), "mater", "cremad"))


def test_mocanu_ten_folds_on_both_datasets():
    table = folds.make_folds(ravdess_actors(), "mocanu", "ravdess")
    sizes = table.groupby("fold").size()
    assert len(sizes) == 10 and sorted(sizes.unique()) == [2, 3]  # 24 actors: about 10 % per fold
    train, val, test = folds.split(table, 0)
    assert len(train) + len(val) + len(test) == 24 and not set(val) & set(test)
    assert folds.n_folds_for("mocanu", "cremad", 91) == 10


def test_hicmae_consecutive_blocks():
    table = folds.make_folds(ravdess_actors(), "hicmae", "ravdess")
    assert table.groupby("fold")["actor"].apply(list).tolist()[:2] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    cremad = folds.make_folds(pd.DataFrame({"actor": range(1001, 1092), "sex": None}), "hicmae", "cremad")
    assert cremad.groupby("fold").size().tolist() == [19, 18, 18, 18, 18]


def test_small_actor_sets_shrink_folds():
    assert folds.n_folds_for("mater", "synthetic", 6) == 3
    assert folds.n_folds_for("mater", "ravdess", 2) == 2
    assert folds.n_folds_for("mater", "ravdess", 1) == 1
    single = folds.make_folds(ravdess_actors(1), "mater", "ravdess")
    with pytest.raises(MerError, match="needs at least 2 actors"):
        folds.split(single, 0)
    with pytest.raises(MerError, match="unknown fold scheme"):
        folds.n_folds_for("kfold", "ravdess", 24)


def test_split_is_subject_disjoint_with_next_fold_as_validation():
    table = folds.make_folds(ravdess_actors(), "mater", "ravdess")
    train, val, test = folds.split(table, 11)
    assert test == [23, 24] and val == [1, 2]
    assert not set(train) & set(val) | set(train) & set(test)
    assert sorted(train + val + test) == list(range(1, 25))
    two = folds.make_folds(ravdess_actors(2), "mater", "ravdess")
    assert folds.split(two, 0) == ([1], [], [2])
    with pytest.raises(MerError, match="does not exist"):
        folds.split(table, 12)
    assert "fold  0: 1 (m), 2 (f)" in folds.describe(table)


def test_window_plan_masks_short_clips_and_records_cut():
    short = windows.plan(2.2, 0.5, 8)
    assert short.mask.tolist() == [True] * 4 + [False] * 4 and short.cut_seconds == 0
    half = windows.plan(2.25, 0.5, 8)
    assert half.n_present == 5  # the fifth window is exactly half covered
    long = windows.plan(5.0, 0.5, 8)
    assert long.mask.all() and long.cut_seconds == pytest.approx(1.0)
    assert np.allclose(long.starts, np.arange(8) * 0.5) and np.allclose(long.ends - long.starts, 0.5)


def test_segment_and_frame_assignment():
    rate = 16000
    signal = np.arange(int(1.2 * rate), dtype=np.float32)
    plan = windows.plan_signal(signal, rate, 0.5, 3)
    chunks = windows.segment(signal, rate, plan)
    assert chunks.shape == (3, 8000) and plan.mask.tolist() == [True, True, False]
    assert chunks[1, 0] == 8000 and chunks[2, 3199] == 19199 and (chunks[2, 3200:] == 0).all()
    tail = windows.segment(signal[5000:], rate, plan, origin=5000)  # the part of a long signal still held
    np.testing.assert_array_equal(tail[1:], chunks[1:])
    assert (tail[0, :5000] == 0).all() and (tail[0, 5000:] == chunks[0, 5000:]).all()
    members = windows.frame_windows(np.array([0.0, 0.49, 0.5, 1.99, 2.0]), windows.plan(2.0, 0.5, 4))
    assert members.tolist() == [[True, False, False, False], [True, False, False, False],
                                [False, True, False, False], [False, False, False, True], [False] * 4]
    with pytest.raises(MerError, match=r"window \(--window\) must be a finite number > 0"):
        windows.plan(3.0, 0.0, 8)
    with pytest.raises(MerError, match=r"windows \(--windows\) must be an integer >= 1 and <= 1000"):
        windows.plan(3.0, 0.5, windows.MAX_WINDOWS + 1)
    with pytest.raises(MerError, match="cover 800 s, more than 600 s"):
        windows.plan(3.0, 2.0, 400)
    with pytest.raises(MerError, match="unknown window layout 'middle'"):
        windows.plan(3.0, 0.5, 8, "middle")
    with pytest.raises(MerError, match="needs the clip's voiced span"):
        windows.plan(3.0, 0.5, 8, "voiced")


def test_spread_layout_spaces_windows_evenly_over_the_clip():
    long = windows.plan(4.5, 0.5, 5, "spread")  # 4 s of room: a start every second, gaps of 0.5 s
    assert np.allclose(long.starts, [0, 1, 2, 3, 4]) and np.allclose(long.ends - long.starts, 0.5)
    assert long.mask.all() and long.cut_seconds == pytest.approx(2.0)
    short = windows.plan(1.5, 0.5, 5, "spread")  # windows overlap; together they cover the clip
    assert np.allclose(short.starts, [0, 0.25, 0.5, 0.75, 1.0]) and short.cut_seconds == pytest.approx(0)
    tiny = windows.plan(0.3, 0.5, 3, "spread")  # shorter than a window: all at 0, 0.3 s of 0.5 is present
    assert np.allclose(tiny.starts, 0) and tiny.mask.all()
    assert windows.plan(0.2, 0.5, 3, "spread").n_present == 0
    assert np.allclose(windows.plan(3.0, 0.5, 1, "spread").starts, [1.25])  # one window: centred


def test_voiced_layout_follows_the_span_and_stays_inside_the_clip():
    over = windows.plan(4.0, 0.5, 3, "voiced", span=(1.0, 3.0))
    assert np.allclose(over.starts, [1.0, 1.75, 2.5]) and np.allclose(over.ends, [1.5, 2.25, 3.0])
    assert over.mask.all() and over.cut_seconds == pytest.approx(2.5)  # 1 s before, 1 s after, 2 gaps of 0.25 s
    dense = windows.plan(4.0, 0.5, 8, "voiced", span=(1.0, 2.0))  # overlapping windows, all inside the span
    assert dense.starts.min() == pytest.approx(1.0) and dense.ends.max() == pytest.approx(2.0)
    assert np.allclose(np.diff(dense.starts), 0.5 / 7)
    brief = windows.plan(4.0, 0.5, 4, "voiced", span=(2.0, 2.2))  # shorter than a window: centred on it
    assert np.allclose(brief.starts, 1.85) and brief.mask.all()
    edge = windows.plan(4.0, 0.5, 2, "voiced", span=(3.9, 4.2))  # centred would leave the clip: shifted in
    assert np.allclose(edge.starts, 3.5) and np.allclose(edge.ends, 4.0)


def test_clip_layout_is_one_window_of_the_whole_clip():
    whole = windows.plan(3.3, 0.5, 8, "clip")
    assert whole.starts.tolist() == [0.0] and whole.ends.tolist() == [3.3] and whole.mask.tolist() == [True]
    assert whole.window == 3.3 and whole.cut_seconds == 0
    assert windows.plan(3.3, None, None, "clip").ends.tolist() == [3.3]
    assert windows.settings(0.5, 8, "clip") == (None, 1) and windows.settings(0.5, 8, "voiced") == (0.5, 8)
    rate = 100
    signal = np.arange(330, dtype=np.float32)
    chunks = windows.segment(signal, rate, windows.plan_signal(signal, rate, None, None, "clip"))
    assert chunks.shape == (1, 330) and np.array_equal(chunks[0], signal)


def test_voiced_span_of_silence_tone_silence():
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    rng = np.random.default_rng(0)
    def noise(seconds):
        return 1e-4 * rng.standard_normal(int(seconds * rate))  # 70 dB below the tone
    signal = np.concatenate([noise(0.8), tone, noise(1.2)])
    start, end = windows.voiced_span(signal, rate)
    assert start == pytest.approx(0.8, abs=0.03) and end == pytest.approx(2.3, abs=0.03)
    signal[int(0.1 * rate):int(0.105 * rate)] = 0.5  # a 5 ms click before the speech does not open the span
    assert windows.voiced_span(signal, rate)[0] == pytest.approx(0.8, abs=0.03)
    quiet = signal.copy()
    quiet[int(0.9 * rate):int(1.0 * rate)] *= 1e-3  # a pause inside the speech stays inside the span
    assert windows.voiced_span(quiet, rate) == pytest.approx((start, end), abs=0.03)
    planned = windows.plan_signal(signal, rate, 0.5, 3, "voiced")
    assert planned.starts[0] == pytest.approx(0.8, abs=0.03) and planned.ends[-1] == pytest.approx(2.3, abs=0.03)
    with pytest.raises(MerError, match="audio is silent"):
        windows.voiced_span(np.zeros(rate), rate)


def test_overlapping_windows_pool_every_frame_they_contain():
    plan = windows.plan(1.0, 0.5, 3, "spread")  # windows [0, .5), [.25, .75), [.5, 1)
    times = np.array([0.1, 0.3, 0.6, 0.9])
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    members = windows.frame_windows(times, plan)
    assert members.sum(axis=1).tolist() == [1, 2, 2, 1]
    pooled, mask = pool_windows(features, members)
    expected = np.array([[0.5, 0.5], [0.0, 2.0], [2.5, 1.5]])
    np.testing.assert_allclose(pooled, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert mask.all()
    empty, mask = pool_windows(features[:1], windows.frame_windows(times[:1], plan))
    assert mask.tolist() == [True, False, False] and not empty[1:].any()
