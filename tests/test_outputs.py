"""One output type for every network (mer_lib.models.outputs), its internals only when asked."""
from __future__ import annotations

import pytest
import torch

from mer_lib.config import make_config
from mer_lib.models import registry
from mer_lib.models.outputs import ModelOutput, concatenate
from mer_lib.models.standardized import build_model

B, T, C, DIMS = 3, 4, 5, {"a": 6, "v": 8}
# What each network fills: its single-modality heads, and whether it has an embedding and a dimensional head.
EXPECTED = {"mater": ("av", False, False), "lstm": ("av", False, False), "cross_attention": ("", True, False),
            "jca": ("", True, True)}


def inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 2:] = False
    return {"audio": torch.randn(B, T, DIMS["a"], generator=g), "video": torch.randn(B, T, DIMS["v"], generator=g),
            "audio_mask": mask, "video_mask": mask.clone()}


def test_the_expectations_cover_every_registered_network():
    assert set(EXPECTED) == set(registry.NETWORKS)


@pytest.mark.parametrize("name", list(registry.NETWORKS))
def test_every_network_returns_a_model_output_with_internals_only_when_asked(name):
    torch.manual_seed(0)
    model = build_model(make_config(model=name, d_model=8, heads=2, layers=2, d_ff=16), C, DIMS, T).eval()
    heads, has_embedding, has_valence_arousal = EXPECTED[name]
    plain, inside = model(**inputs()), model(**inputs(), return_internals=True)
    for out in (plain, inside):
        assert isinstance(out, ModelOutput) and out.logits.shape == (B, C)
        assert sorted(out.modality_logits) == list(heads)
        assert all(logits.shape == (B, C) for logits in out.modality_logits.values())
        assert (out.embedding is not None) == has_embedding
        assert (out.valence_arousal is not None) == has_valence_arousal
    assert plain.hidden == {} and plain.attention == {}
    assert inside.hidden and inside.attention
    torch.testing.assert_close(inside.logits, plain.logits)


def test_concatenate_joins_batches_clip_after_clip():
    torch.manual_seed(0)
    model = build_model(make_config(model="jca", d_model=8), C, DIMS, T).eval()
    data = inputs()
    whole = model(**data)
    parts = concatenate([model(**{k: v[:1] for k, v in data.items()}), model(**{k: v[1:] for k, v in data.items()})])
    for name in ("logits", "embedding", "valence_arousal"):
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name))
    assert parts.modality_logits == {} and parts.hidden == {} and parts.attention == {}
