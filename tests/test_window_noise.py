"""Noisy time windows (MATER journal section 5.1 and Algorithm 1): where, how many, and how large."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mer_lib.config import make_config
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models.mater import Mater, MaterConfig
from mer_lib.models.noise import algorithm1, drop_modality, inject_noise, input_space
from mer_lib.models.standardized import Standardized, build_model
from mer_lib.train import predict

N, T, D_A, D_V = 12, 8, 6, 5
PRESENT = 5  # clip 0 has only its first five audio windows


def clip_data(seed: int = 0, scale: float = 1.0, offset: float = 0.0) -> ClipData:
    rng = np.random.default_rng(seed)
    mask = np.ones((N, T), bool)
    mask[0, PRESENT:] = False
    audio = offset + scale * (2 + rng.random((N, T, D_A)))
    return ClipData.from_numpy(rng.integers(0, 3, N), 3, audio=audio, audio_mask=mask,
                               video=2 + rng.random((N, T, D_V)))


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N, T) windows whose embedding differs."""
    return (before != after).any(-1)


def standardized(data: ClipData) -> Standardized:
    torch.manual_seed(0)
    config = make_config("fast", modalities="av", d_model=8, heads=2, layers=1, d_ff=16)
    return build_model(config, 3, data.dims(), data.n_windows).fit(data)


@pytest.mark.parametrize("modality", ["a", "v", "av"])
@pytest.mark.parametrize("k", [0, 1, 3, T])
def test_inject_noise_replaces_k_present_windows_with_windows_of_the_same_norm(modality, k):
    data = clip_data()
    originals = {name: getattr(data, name).clone() for name in ("audio", "video", "audio_mask", "video_mask")}
    noisy = inject_noise(data, modality, k, torch.Generator().manual_seed(1))
    for m, name in (("a", "audio"), ("v", "video")):
        touched = changed(originals[name], getattr(noisy, name))
        expected = [min(k, int(present)) if m in modality else 0 for present in originals[f"{name}_mask"].sum(1)]
        assert touched.sum(1).tolist() == expected  # a short clip gets all its windows, never padded ones
        assert not (touched & ~originals[f"{name}_mask"]).any()
        torch.testing.assert_close(getattr(noisy, name).norm(dim=-1)[touched], originals[name].norm(dim=-1)[touched])
        torch.testing.assert_close(getattr(data, name), originals[name])  # the input is not modified
    assert torch.equal(noisy.audio_mask, originals["audio_mask"]) and torch.equal(noisy.video_mask,
                                                                                  originals["video_mask"])
    assert torch.equal(noisy.labels, data.labels) and noisy.n_classes == 3


def test_noise_lives_in_the_standardised_space_whatever_the_extractors_scale():
    """The same draw on windows 1000 times larger (and shifted) looks the same to the model."""
    small, large = clip_data(), clip_data(scale=1000.0, offset=-50.0)
    views = []
    for data in (small, large):
        model = standardized(data)
        noisy = inject_noise(data, "a", 3, torch.Generator().manual_seed(4), space=input_space(model))
        views.append(model.standardise("a", noisy.audio))
        touched = changed(data.audio, noisy.audio)
        seen_norm = model.standardise("a", data.audio).norm(dim=-1)
        torch.testing.assert_close(views[-1].norm(dim=-1)[touched], seen_norm[touched], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(views[0], views[1], rtol=1e-3, atol=1e-3)


def test_a_model_without_standardisation_is_no_space():
    model = Mater(MaterConfig(n_classes=3, d_audio=D_A, d_video=D_V, d_model=8, heads=2, layers=1, d_ff=16))
    assert input_space(model) is None and input_space(standardized(clip_data())) is not None


def test_inject_noise_positions_vary_per_clip_and_modality_and_follow_the_generator():
    data = clip_data()
    noisy = inject_noise(data, "av", 2, torch.Generator().manual_seed(0))
    audio_positions = changed(data.audio, noisy.audio)
    video_positions = changed(data.video, noisy.video)
    assert len({tuple(row.tolist()) for row in audio_positions}) > 1  # chosen per clip
    assert not torch.equal(audio_positions, video_positions)  # and per modality
    again = inject_noise(data, "av", 2, torch.Generator().manual_seed(0))
    assert torch.equal(again.audio, noisy.audio) and torch.equal(again.video, noisy.video)


def test_inject_noise_rejects_bad_input():
    data = clip_data()
    for k in (-1, T + 1, 1.5):
        with pytest.raises(MerError, match=r"0\.\.8"):
            inject_noise(data, "a", k, torch.Generator())
    with pytest.raises(MerError, match="modalities"):
        inject_noise(data, "x", 1, torch.Generator())
    audio_only = ClipData.from_numpy([0], 2, audio=np.ones((1, T, 3)))
    with pytest.raises(MerError, match="no video windows"):
        inject_noise(audio_only, "av", 1, torch.Generator())


@pytest.mark.parametrize("n_windows, largest", [(8, 4), (5, 2), (1, 1)])
def test_algorithm1_counts_stay_in_one_to_half_t(n_windows, largest):
    rng = np.random.default_rng(0)
    data = ClipData.from_numpy(rng.integers(0, 2, 400), 2, audio=2 + rng.random((400, n_windows, 3)),
                               video=2 + rng.random((400, n_windows, 3)))
    noisy, counts = algorithm1(data, "av", torch.Generator().manual_seed(0), return_counts=True)
    assert set(counts) == {"a", "v"}
    for m, name in (("a", "audio"), ("v", "video")):
        assert counts[m].min().item() == 1 and counts[m].max().item() == largest  # 400 draws reach both ends
        assert torch.equal(changed(getattr(data, name), getattr(noisy, name)).sum(1), counts[m])
    assert not torch.equal(counts["a"], counts["v"]) or largest == 1  # drawn independently


def test_algorithm1_counts_half_the_present_windows_of_a_short_clip():
    data = clip_data()
    for seed in range(20):
        noisy, counts = algorithm1(data, "a", torch.Generator().manual_seed(seed), return_counts=True)
        touched = changed(data.audio, noisy.audio)
        assert 1 <= counts["a"][0] <= PRESENT // 2 and not touched[0, PRESENT:].any()
        assert ((counts["a"][1:] >= 1) & (counts["a"][1:] <= T // 2)).all()


def test_algorithm1_without_generator_uses_the_seeded_global_rng_and_one_modality():
    data = clip_data()
    torch.manual_seed(3)
    first = algorithm1(data, "v")
    torch.manual_seed(3)
    second = algorithm1(data, "v")
    assert isinstance(first, ClipData) and torch.equal(first.video, second.video)
    assert torch.equal(first.audio, data.audio)
    touched = changed(data.video, first.video).sum(1)
    assert ((touched >= 1) & (touched <= T // 2)).all()


def test_drop_modality_zeroes_and_masks_out_one_modality():
    data = clip_data()
    dropped = drop_modality(data, "v")
    assert torch.equal(dropped.video, torch.zeros_like(data.video)) and not dropped.video_mask.any()
    assert torch.equal(dropped.audio, data.audio) and torch.equal(dropped.audio_mask, data.audio_mask)
    assert data.video_mask.all()  # input untouched
    torch.manual_seed(0)
    model = Mater(MaterConfig(n_classes=3, d_audio=D_A, d_video=D_V, d_model=8, heads=2, layers=1, d_ff=16))
    output = predict(model, dropped)
    torch.testing.assert_close(output.logits, output.modality_logits["a"])  # only audio decides
    with pytest.raises(MerError, match="'a' or 'v'"):
        drop_modality(data, "av")
