"""The embedding store: naming, round trip, selection, ambiguity errors."""
from __future__ import annotations

import numpy as np
import pytest

from mer_lib.errors import MerError
from mer_lib.features import store


def make(n=4, t=8, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, t), bool)
    mask[0, 5:] = False
    return store.EmbeddingStore([f"c{i}" for i in range(n)], rng.normal(size=(n, t, d)).astype(np.float32), mask,
                                {"extractor": "logmel"})


def test_round_trip_and_select(tmp_path):
    original = make()
    name = store.store_name("audio", "logmel", 0.5, 8)
    assert name == "audio-logmel-w0.5xT8"
    path = store.save_store(tmp_path, name, original)
    assert path.is_file() and path.with_suffix(".json").is_file()
    loaded = store.load_store(tmp_path, "audio")
    assert loaded.ids == original.ids and np.array_equal(loaded.X, original.X)
    assert np.array_equal(loaded.mask, original.mask) and loaded.meta["extractor"] == "logmel"
    picked = loaded.select(["c2", "c0"])
    assert picked.ids == ["c2", "c0"] and np.array_equal(picked.X[1], original.X[0])
    with pytest.raises(MerError, match="no embeddings"):
        loaded.select(["zzz"])


def test_choice_between_stores(tmp_path):
    store.save_store(tmp_path, store.store_name("audio", "logmel", 0.5, 8), make())
    store.save_store(tmp_path, store.store_name("audio", "logmel", 0.25, 16), make(t=16))
    with pytest.raises(MerError, match="several audio embedding stores"):
        store.load_store(tmp_path, "audio")
    assert store.load_store(tmp_path, "audio", window=0.25).X.shape == (4, 16, 3)
    with pytest.raises(MerError, match="run `mer extract` first"):
        store.load_store(tmp_path, "video")


def test_rejects_inconsistent_or_nan():
    bad = make()
    with pytest.raises(MerError, match="inconsistent"):
        store.EmbeddingStore(bad.ids[:2], bad.X, bad.mask)
    bad.X[0, 0, 0] = np.nan
    with pytest.raises(MerError, match="NaN"):
        store.EmbeddingStore(bad.ids, bad.X, bad.mask)
    with pytest.raises(MerError, match="unknown modality"):
        store.store_name("text", "x", 0.5, 8)
