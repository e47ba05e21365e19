"""Cross-modal attention fusion (Mocanu et al. 2023): shapes of eqs. 1-11, softmax axes, masks, modes."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from mer_lib.errors import MerError
from mer_lib.models.attention import MultiHeadSelfAttention
from mer_lib.models.cross_attention import (
    CrossAttentionConfig,
    CrossAttentionModel,
    CrossModalFusion,
    paper_config,
    spectrogram_segments,
    video_map_side,
)


def small_config(**overrides) -> CrossAttentionConfig:
    settings = dict(n_classes=6, d_audio=12, d_video=16, d_model=8, heads=2, d_embedding=10, dropout=0.0)
    return CrossAttentionConfig(**(settings | overrides))


def windows(b=3, t=6, d_audio=12, d_video=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, d_audio, generator=g), torch.randn(b, t, d_video, generator=g)


def test_multi_head_attention_matches_eq_2_for_one_head():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(6, 4, n_heads=1)
    x = torch.randn(2, 5, 6)
    out, weights = attention(x)
    q, k, v = attention.w_qkv(x).chunk(3, dim=-1)
    expected = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(6), dim=-1) @ v @ attention.w_o.weight.T
    assert out.shape == (2, 5, 4) and weights.shape == (2, 1, 5, 5)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, 5))


def test_head_size_is_ceil_of_d_over_h():
    # VC attends over s = h w features; 14 x 14 = 196 positions are not a multiple of 8 heads.
    attention = MultiHeadSelfAttention(196, 196, n_heads=8)
    assert attention.d_head == 25 and attention.w_o.weight.shape == (196, 8 * 25)
    assert MultiHeadSelfAttention(512, 512, 8).d_head == 64  # m / H when H divides m


def test_visual_attention_shapes_of_eqs_1_to_6():
    config = small_config(frame_size=48)  # 48 -> 24 -> 12 -> 6 -> 3: 3 x 3 maps
    assert video_map_side(48) == 3 and config.map_positions == 9
    model = CrossAttentionModel(config)
    maps = torch.randn(2, 6, 16, 3, 3)  # (B, N, m, h, w)
    audio = torch.randn(2, 6, 12)  # (B, N, m')
    out = model.forward_features(maps, audio, return_internals=True)
    att = out.attention
    assert att["VS"].shape == (2, 6, 2, 9, 9)  # eq. 2: (s x s) per head and snippet
    assert att["VC"].shape == (2, 6, 2, 16, 16)  # eq. 5: (m x m) per head and snippet
    assert att["VT"].shape == (2, 2, 6, 6) and att["AT"].shape == (2, 2, 6, 6)  # eq. 6: (N x N)
    assert att["W_audio"].shape == (2, 6, 6) and att["W_video"].shape == (2, 6, 6)  # eq. 7: Corr is N x N
    for key in ("VS", "VC", "VT", "AT"):
        torch.testing.assert_close(att[key].sum(-1), torch.ones(att[key].shape[:-1]))
    assert out.logits.shape == (2, 6) and out.embedding.shape == (2, 10)
    assert out.modality_logits == {}


def test_cross_modal_fusion_follows_eqs_7_to_10():
    torch.manual_seed(1)
    fusion = CrossModalFusion(4)
    d_at, d_vt = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    ones = torch.ones(2, 5, dtype=torch.bool)
    d_corr_at, d_corr_vt, w_audio, w_video = fusion(d_at, d_vt, ones, ones)
    corr = d_at @ fusion.W @ d_vt.transpose(1, 2)  # eq. 7, rows = audio segments, columns = video snippets
    # column-wise softmax: each column of W^Audio (one video snippet) sums to one over the audio axis
    torch.testing.assert_close(w_audio, torch.softmax(corr, dim=1))
    torch.testing.assert_close(w_audio.sum(1), torch.ones(2, 5))
    torch.testing.assert_close(w_video, torch.softmax(corr.transpose(1, 2), dim=1))
    torch.testing.assert_close(w_video.sum(1), torch.ones(2, 5))
    assert not torch.allclose(w_audio.sum(2), torch.ones(2, 5))  # rows are not normalised
    # eqs. 8-10: attended audio for snippet j = sum_i W^Audio[i, j] d_ai, added and squashed
    j = 3
    attended = (w_audio[0, :, j, None] * d_at[0]).sum(0)
    torch.testing.assert_close(d_corr_at[0, j], torch.tanh(d_at[0, j] + attended))
    attended_v = (w_video[1, :, j, None] * d_vt[1]).sum(0)
    torch.testing.assert_close(d_corr_vt[1, j], torch.tanh(d_vt[1, j] + attended_v))
    assert d_corr_at.shape == d_corr_vt.shape == (2, 5, 4)


def test_fusion_weight_is_xavier_initialised():
    torch.manual_seed(0)
    w = CrossModalFusion(512).W.detach()
    bound = math.sqrt(6.0 / (512 + 512))
    assert w.abs().max() <= bound and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_masked_windows_never_reach_the_output():
    model = CrossAttentionModel(small_config()).eval()
    audio, video = windows()
    audio_mask = torch.ones(3, 6, dtype=torch.bool)
    video_mask = torch.ones(3, 6, dtype=torch.bool)
    audio_mask[0, 4:] = False
    video_mask[1, :2] = False
    video_mask[2] = False  # a clip without any face
    out = model(audio, video, audio_mask, video_mask, return_internals=True)
    noisy_audio, noisy_video = audio.clone(), video.clone()
    noisy_audio[~audio_mask] = 1e6
    noisy_video[~video_mask] = float("nan")
    noisy = model(noisy_audio, noisy_video, audio_mask, video_mask)
    torch.testing.assert_close(noisy.logits, out.logits)
    assert torch.isfinite(out.logits).all()
    w_audio = out.attention["W_audio"]
    assert (w_audio[0, 4:] == 0).all()  # padded audio segments get no weight
    torch.testing.assert_close(w_audio[0].sum(0), torch.ones(6))  # columns still sum to one
    assert (w_audio[1, :, :2] == 0).all() and (w_audio[2] == 0).all()  # padded snippets attend to nothing


def test_window_mode_forward_and_backward():
    model = CrossAttentionModel(small_config())
    audio, video = windows()
    out = model(audio=audio, video=video)
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert model.visual_spatial_channel is None and model.video_trunk is None  # nothing unused is built


def test_frozen_feature_mode_forward_and_backward_and_shared_modules():
    model = CrossAttentionModel(small_config(frame_size=48)).eval()
    maps, audio = torch.randn(2, 6, 16, 3, 3, requires_grad=True), torch.randn(2, 6, 12)
    out = model.forward_features(maps, audio)
    out.logits.sum().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    assert model.fusion.W.grad.abs().sum() > 0
    # the same temporal attention and fusion modules serve the window-embedding mode
    window_model = CrossAttentionModel(small_config()).eval()
    window_model.load_state_dict(model.state_dict(), strict=False)  # all but VS and VC
    pooled = model.visual_spatial_channel(maps.detach(), {})
    torch.testing.assert_close(window_model(audio=audio, video=pooled).logits, out.logits.detach())
    with pytest.raises(MerError, match="4x4 positions do not fit"):
        model.forward_features(torch.randn(2, 6, 16, 4, 4), audio)
    with pytest.raises(MerError, match="takes no visual maps"):
        CrossAttentionModel(small_config()).forward_features(maps, audio)


def test_forward_on_flattened_cached_maps_equals_forward_features():
    # the training loop passes stored (B, T, d) sequences: the store keeps each snippet's maps flattened
    torch.manual_seed(0)
    model = CrossAttentionModel(small_config(frame_size=48)).eval()
    maps, audio = torch.randn(2, 6, 16, 3, 3), torch.randn(2, 6, 12)
    flat = maps.flatten(2)  # (B, N, m h w), channel-major like the backbone store
    expected = model.forward_features(maps, audio, return_internals=True)
    out = model(audio=audio, video=flat, return_internals=True)
    torch.testing.assert_close(out.logits, expected.logits)
    torch.testing.assert_close(out.attention["VS"], expected.attention["VS"])
    assert set(out.attention) == {"VS", "VC", "VT", "AT", "W_audio", "W_video"}
    with pytest.raises(MerError, match=r"video maps must be \(batch, snippets, 16\*3\*3 = 144\) for frame_size 48"):
        model(audio=audio, video=torch.randn(2, 6, 16))


def test_masked_cached_snippets_never_reach_the_output():
    torch.manual_seed(0)
    model = CrossAttentionModel(small_config(frame_size=48))
    flat, audio = torch.randn(2, 6, 144), torch.randn(2, 6, 12)
    video_mask = torch.ones(2, 6, dtype=torch.bool)
    video_mask[0, 4:] = False
    video_mask[1] = False  # a clip without any face
    out = model.eval()(audio=audio, video=flat, video_mask=video_mask, return_internals=True)
    noisy = flat.clone()
    noisy[~video_mask] = float("nan")
    model.train()  # dropout 0: gradients must stay finite too
    noisy_out = model(audio=audio, video=noisy, video_mask=video_mask)
    torch.testing.assert_close(noisy_out.logits, out.logits)
    noisy_out.logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert (out.attention["W_video"][0, 4:] == 0).all() and (out.attention["W_video"][1] == 0).all()


def test_end_to_end_forward_and_backward_on_cpu():
    torch.manual_seed(0)
    config = CrossAttentionConfig(n_classes=8, d_model=32, heads=8, frame_size=32, video_backbone="r3d_18",
                                  audio_backbone="resnet18", spectrogram_size=(64, 64))
    model = CrossAttentionModel(config)
    faces = torch.randn(2, 6, 3, 16, 32, 32)  # (B, N, 3, k, H, W)
    segments = torch.stack([spectrogram_segments(torch.randn(16000 * 4), 16000) for _ in range(2)])
    assert segments.shape == (2, 6, 1, 256, 100)  # 6 x 1 s
    out = model.forward_frames(faces, segments, return_internals=True)
    assert out.logits.shape == (2, 8) and out.embedding.shape == (2, 512)
    assert out.attention["VS"].shape == (2, 6, 8, 4, 4) and out.attention["VC"].shape == (2, 6, 8, 512, 512)
    F.cross_entropy(out.logits, torch.tensor([3, 5])).backward()
    assert model.video_trunk.net.stem[0].weight.grad.abs().sum() > 0
    assert model.audio_trunk.net.conv1.weight.grad.abs().sum() > 0
    assert model.audio_trunk.net.conv1.weight.shape[1] == 1  # 1-channel spectrogram input
    with pytest.raises(MerError, match="faces must have 6 dimensions"):
        model.forward_frames(faces[0], segments)


@pytest.mark.parametrize("switch, absent", [("vs", "VS"), ("vc", "VC"), ("vt", "VT"), ("at", "AT"),
                                            ("fusion", "W_audio")])
def test_ablation_switches_remove_their_module(switch, absent):
    model = CrossAttentionModel(small_config(frame_size=48, **{switch: False}))
    out = model.forward_features(torch.randn(2, 6, 16, 3, 3), torch.randn(2, 6, 12), return_internals=True)
    assert absent not in out.attention and out.logits.shape == (2, 6)
    assert len(out.attention) == 6 - (2 if switch == "fusion" else 1)
    if switch == "vt":
        assert model.visual_temporal.attention is None  # a plain linear map m -> m' instead
        assert model.visual_temporal.projection.weight.shape == (8, 16)


def test_single_modality_models():
    audio, video = windows()
    audio_only = CrossAttentionModel(small_config(modalities="a"))
    out = audio_only(audio=audio)
    assert out.modality_logits["a"] is out.logits and set(out.modality_logits) == {"a"}
    assert audio_only.visual_temporal is None and audio_only.fusion is None
    assert audio_only.embed.in_features == 8  # m' only
    video_only = CrossAttentionModel(small_config(modalities="v"))
    assert video_only(video=video).modality_logits["v"].shape == (3, 6)
    with pytest.raises(MerError, match="needs audio input"):
        CrossAttentionModel(small_config())(video=video)
    with pytest.raises(MerError, match=r"video windows must be \(batch, windows, 16\)"):
        CrossAttentionModel(small_config())(audio=audio, video=audio)


def test_config_errors():
    with pytest.raises(MerError, match="unknown video backbone 'c3d'"):
        CrossAttentionConfig(video_backbone="c3d", frame_size=112)
    with pytest.raises(MerError, match="r3d_101 gives 2048 channels: set d_video=2048"):
        CrossAttentionConfig(video_backbone="r3d_101", frame_size=224)
    with pytest.raises(MerError, match="needs frame_size"):
        CrossAttentionConfig(video_backbone="r3d_18")
    with pytest.raises(MerError, match="unknown modalities"):
        CrossAttentionConfig(modalities="va")
    config = paper_config(n_classes=6)
    assert (config.video_backbone, config.d_video, config.frame_size, config.heads) == ("r3d_101", 2048, 224, 8)
    assert config.map_positions == 14 * 14
