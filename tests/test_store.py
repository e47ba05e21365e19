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


@pytest.mark.parametrize("layout,name", [("fixed", "audio-egemaps-w0.5xT8"), ("voiced", "audio-egemaps-w0.5xT8-voiced"),
                                         ("spread", "audio-egemaps-w0.5xT8-spread"), ("clip", "audio-egemaps-clip")])
def test_layout_store_names_round_trip(layout, name):
    assert store.store_name("audio", "egemaps", 0.5, 8, layout) == name
    parsed = store.parse_store_name(name)
    window, count = (None, 1) if layout == "clip" else (0.5, 8)
    assert parsed == {"name": name, "modality": "audio", "extractor": "egemaps", "window": window, "count": count,
                      "layout": layout}
    assert store.store_name("audio", "egemaps", parsed["window"], parsed["count"], parsed["layout"]) == name


def test_stores_are_found_by_layout_fixed_by_default(tmp_path):
    for layout in ("fixed", "voiced", "spread"):
        store.save_store(tmp_path, store.store_name("audio", "logmel", 0.5, 8, layout), make(seed=len(layout)))
    store.save_store(tmp_path, store.store_name("audio", "logmel", None, None, "clip"), make(t=1))
    assert store.load_store(tmp_path, "audio").meta["name"] == "audio-logmel-w0.5xT8"
    assert store.load_store(tmp_path, "audio", layout="voiced").meta["name"] == "audio-logmel-w0.5xT8-voiced"
    clip = store.load_store(tmp_path, "audio", window=0.5, count=8, layout="clip")  # the clip layout has no w x T
    assert clip.meta["name"] == "audio-logmel-clip" and clip.X.shape == (4, 1, 3)
    with pytest.raises(MerError, match="no audio embeddings with the spread window layout match"):
        store.load_store(tmp_path, "audio", window=0.25, layout="spread")
    with pytest.raises(MerError, match="unknown window layout 'voice'"):
        store.load_store(tmp_path, "audio", layout="voice")
