"""MATER and the LSTM baseline: positional encoding, ablation switches, masking, fusion, attention, learning."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from mer_lib.errors import MerError
from mer_lib.models.baselines import LstmBaseline, LstmConfig, last_valid
from mer_lib.models.mater import Mater, MaterConfig, masked_mean, sinusoidal_encoding

B, T, D_A, D_V, C = 4, 6, 5, 12, 3


def tiny(**overrides) -> MaterConfig:
    """A small MATER whose audio size differs from d_model (projection) and video size equals it."""
    return MaterConfig(**({"n_classes": C, "d_audio": D_A, "d_video": D_V, "d_model": 12, "heads": 3,
                           "layers": 2, "d_ff": 24, "dropout": 0.0} | overrides))


def tiny_lstm(**overrides) -> LstmConfig:
    return LstmConfig(**({"n_classes": C, "d_audio": D_A, "d_video": D_V, "d_model": 12, "layers": 2,
                          "dropout": 0.0} | overrides))


def batch(seed=0):
    """Random windows and masks: clip 1 has padded windows at the end, clip 2 one missing in the middle."""
    g = torch.Generator().manual_seed(seed)
    audio, video = torch.randn(B, T, D_A, generator=g), torch.randn(B, T, D_V, generator=g)
    audio_mask = torch.ones(B, T, dtype=torch.bool)
    audio_mask[1, 4:] = False
    audio_mask[2, 2] = False
    video_mask = audio_mask.clone()
    video_mask[3, 1:] = False
    return audio, video, audio_mask, video_mask


MODELS = {
    "mater": lambda: Mater(tiny()),
    "mater-no-pe": lambda: Mater(tiny(pe=False)),
    "mater-no-mhsa": lambda: Mater(tiny(mhsa=False)),
    "lstm-mean": lambda: LstmBaseline(tiny_lstm()),
    "lstm-last": lambda: LstmBaseline(tiny_lstm(pooling="last")),
}


def test_positional_encoding_matches_the_formula():
    for d in (8, 7):
        pe = sinusoidal_encoding(10, d)
        assert pe.shape == (10, d)
        for t in range(10):
            for j in range(d):
                i = j // 2
                angle = t / 10000 ** (2 * i / d)
                expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
                assert pe[t, j].item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(sinusoidal_encoding(1, 4)[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_pe_switch_adds_the_encoding_only_when_on():
    torch.manual_seed(0)
    with_pe = Mater(tiny(pe=True)).eval()
    without = Mater(tiny(pe=False)).eval()
    without.load_state_dict(with_pe.state_dict())  # same weights; PE has no parameters
    audio, video, *_ = batch()
    assert not torch.allclose(with_pe(audio, video).logits, without(audio, video).logits)
    # without PE and with full masks, MHSA + mean pooling is permutation invariant over windows
    shuffled = without(audio[:, [3, 1, 0, 5, 2, 4]], video[:, [3, 1, 0, 5, 2, 4]]).logits
    assert torch.allclose(without(audio, video).logits, shuffled, atol=1e-5)


def test_no_mhsa_baseline_has_no_attention_parameters_and_the_same_depth():
    full, baseline = Mater(tiny()), Mater(tiny(mhsa=False))
    full_names = [n for n, _ in full.named_parameters()]
    base_names = [n for n, _ in baseline.named_parameters()]
    assert any(".attn." in n for n in full_names)
    assert not any("attn" in n for n in base_names)
    assert set(base_names) < set(full_names)
    for m in "av":
        assert len(full.branches[m].layers) == len(baseline.branches[m].layers) == 2
        assert all(layer.ff is not None for layer in baseline.branches[m].layers)
    # the difference is exactly the attention sublayers: W_qkv, W_O and their LayerNorm, per layer and modality
    d = 12
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + 2 * d
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(full) - count(baseline) == 2 * 2 * per_layer
    out = baseline(*batch()[:2], return_internals=True)
    assert out.attention == {"a": [], "v": []} and len(out.hidden["a"]) == 2


def test_input_projection_only_when_sizes_differ():
    model = Mater(tiny())
    assert isinstance(model.branches["a"].proj, torch.nn.Linear)
    assert model.branches["a"].proj.in_features == D_A
    assert isinstance(model.branches["v"].proj, torch.nn.Identity)


@pytest.mark.parametrize("name", MODELS)
def test_padded_windows_do_not_change_the_output(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    audio, video, audio_mask, video_mask = batch()
    reference = model(audio, video, audio_mask, video_mask, return_internals=True)
    noisy_audio = torch.where(audio_mask[..., None], audio, torch.randn_like(audio) * 100)
    noisy_video = torch.where(video_mask[..., None], video, torch.randn_like(video) * 100)
    out = model(noisy_audio, noisy_video, audio_mask, video_mask)
    assert torch.allclose(out.logits, reference.logits, atol=1e-5)
    for m in "av":
        assert torch.allclose(out.modality_logits[m], reference.modality_logits[m], atol=1e-5)
    # while a change to a valid window does change it
    changed = audio.clone()
    changed[1, 0] += 1.0
    assert not torch.allclose(model(changed, video, audio_mask, video_mask).logits[1], reference.logits[1])


@pytest.mark.parametrize("name", MODELS)
def test_fused_logits_are_the_mean_of_the_heads(name):
    model = MODELS[name]().eval()
    out = model(*batch())
    assert out.logits.shape == (B, C)
    assert torch.allclose(out.logits, (out.modality_logits["a"] + out.modality_logits["v"]) / 2)


@pytest.mark.parametrize("name", MODELS)
def test_a_missing_modality_gives_no_nan_and_the_other_modality_decides(name):
    model = MODELS[name]()
    audio, video, audio_mask, video_mask = batch()
    audio_mask[0] = False  # clip 0 has no audio at all
    out = model(audio, video, audio_mask, video_mask, return_internals=True)
    assert torch.isfinite(out.logits).all()
    assert torch.allclose(out.logits[0], out.modality_logits["v"][0])
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_unimodal_models_use_one_head():
    model = Mater(tiny(modalities="v")).eval()
    audio, video, _, video_mask = batch()
    out = model(video=video, video_mask=video_mask)
    assert list(out.modality_logits) == ["v"] and torch.equal(out.logits, out.modality_logits["v"])
    assert "a" not in model.branches
    with pytest.raises(MerError, match="needs audio windows"):
        Mater(tiny(modalities="a"))(video=video)


def test_attention_rows_sum_to_one_and_ignore_masked_keys():
    model = Mater(tiny(layers=3)).eval()
    audio, video, audio_mask, video_mask = batch()
    out = model(audio, video, audio_mask, video_mask, return_internals=True)
    for m, mask in (("a", audio_mask), ("v", video_mask)):
        assert len(out.attention[m]) == len(out.hidden[m]) == 3
        for weights, hidden in zip(out.attention[m], out.hidden[m]):
            assert weights.shape == (B, 3, T, T) and hidden.shape == (B, T, 12)
            assert torch.allclose(weights.sum(-1), torch.ones(B, 3, T), atol=1e-6)
            masked_keys = (~mask)[:, None, None, :].expand_as(weights)
            assert (weights[masked_keys] == 0).all()
            assert (weights[~masked_keys] > 0).all()


def test_masked_pooling_and_last_valid_state():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # clip 0: 0..3, clip 1: 4..7
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    assert masked_mean(h, mask).flatten().tolist() == [0.5, 5.0]
    assert last_valid(h, mask).flatten().tolist() == [1.0, 6.0]
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert masked_mean(h[:1], empty).item() == 0.0 and last_valid(h[:1], empty).item() == 0.0


@pytest.mark.parametrize("name", ["mater", "mater-no-mhsa", "lstm-mean"])
def test_a_tiny_model_overfits_a_tiny_batch(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    audio, video, audio_mask, video_mask = batch(seed=1)
    labels = torch.tensor([0, 1, 2, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(audio, video, audio_mask, video_mask).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    logits = model(audio, video, audio_mask, video_mask).logits
    assert F.cross_entropy(logits, labels).item() < 0.05
    assert torch.equal(logits.argmax(1), labels)


def test_bad_configurations_are_one_line_errors():
    with pytest.raises(MerError, match="unknown modalities 'x'"):
        MaterConfig(modalities="x")
    with pytest.raises(MerError, match="not divisible by 5 heads"):
        MaterConfig(d_model=12, heads=5)
    MaterConfig(d_model=12, heads=5, mhsa=False)  # no heads without attention
    with pytest.raises(MerError, match="unknown pooling"):
        LstmConfig(pooling="max")


def test_paper_defaults():
    config = MaterConfig()
    assert (config.d_model, config.heads, config.layers, config.d_ff, config.dropout) == (512, 8, 6, 2048, 0.1)
    assert config.pe and config.mhsa and config.modalities == "av"


@pytest.mark.parametrize("inputs, factor", [("standardised", 1.0), ("l2", math.sqrt(12))])
def test_the_encoder_input_is_the_scaled_embedding_plus_pe(inputs, factor):
    """Embeddings times input_scale (sqrt(d_model) for l2 windows, as in Vaswani et al. 3.4), then PE."""
    model = Mater(tiny(inputs=inputs)).eval()
    audio, video, *_ = batch()
    seen = {}
    for pe in (True, False):
        branch = model.branches["v"]  # identity projection: video size equals d_model
        branch.pe = pe
        handle = branch.layers[0].register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
        model(audio, video)
        handle.remove()
        expected = video * factor + (sinusoidal_encoding(T, 12) if pe else 0)
        assert torch.allclose(seen["x"], expected, atol=1e-5)


@pytest.mark.parametrize("d_in, d_model", [(88, 128), (512, 512)])  # course size (eGeMAPS), paper size (identity)
@pytest.mark.parametrize("inputs", ["standardised", "l2"])
def test_signal_to_pe_ratio_at_initialisation_is_of_order_one(inputs, d_in, d_model):
    """The windows' scaled projection and the PE have components of the same order (ratio 1 to 2 in RMS),
    as Vaswani et al.'s sqrt(d_model)-scaled embeddings do, so switching PE off can change the result."""
    torch.manual_seed(0)
    windows = torch.randn(256, 8, d_in)  # standardised: components of order 1
    if inputs == "l2":
        windows = F.normalize(windows, dim=-1)
    config = MaterConfig(modalities="a", d_audio=d_in, d_model=d_model, heads=8, layers=1, inputs=inputs)
    branch = Mater(config).branches["a"]
    with torch.no_grad():
        signal = branch.proj(windows) * branch.scale
    pe = sinusoidal_encoding(8, d_model)
    ratio = signal.pow(2).mean().sqrt() / pe.pow(2).mean().sqrt()
    assert 1.0 <= ratio <= 2.0, ratio


def test_unknown_window_scaling_is_a_one_line_error():
    with pytest.raises(MerError, match="window scaling"):
        MaterConfig(inputs="minmax")
