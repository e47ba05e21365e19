"""Subject-disjoint folds and time windows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_lib.data import folds, windows
from mer_lib.errors import MerError


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
    chunks, mask = windows.segment(signal, rate, 0.5, 3)
    assert chunks.shape == (3, 8000) and mask.tolist() == [True, True, False]
    assert chunks[1, 0] == 8000 and chunks[2, 3199] == 19199 and (chunks[2, 3200:] == 0).all()
    index = windows.assign_frames(np.array([0.0, 0.49, 0.5, 1.99, 2.0]), 0.5, 4)
    assert index.tolist() == [0, 0, 1, 3, -1]
    with pytest.raises(MerError, match="positive length"):
        windows.plan(3.0, 0.0, 8)
