"""Joint cross-attention (Praveen et al. 2023), the emotion metric loss (Mocanu et al. 2023) and CCC."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from mer_lib.data import cremad, ravdess
from mer_lib.errors import MerError
from mer_lib.models.jca import JcaConfig, JointCrossAttentionModel
from mer_lib.models.losses import (
    ccc,
    ccc_loss,
    emotion_metric_loss,
    make_loss,
    polarities,
    squared_distances,
    triplet_loss,
)

L, D_A, D_V = 5, 6, 4


def jca(**overrides) -> JointCrossAttentionModel:
    torch.manual_seed(0)
    settings = dict(n_classes=8, n_windows=L, d_audio=D_A, d_video=D_V, d_attention=3, d_model=7, dropout=0.0)
    return JointCrossAttentionModel(JcaConfig(**(settings | overrides))).eval()


def clips(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, L, D_A, generator=g), torch.randn(b, L, D_V, generator=g)


# ----------------------------------------------------------------------------- JCA

def test_jca_follows_the_paper_equations():
    model = jca()
    audio, video = clips()
    out = model(audio, video, return_internals=True)
    x_a, x_v = audio[0].T, video[0].T  # (d_a x L), (d_v x L) as in the paper
    j = torch.cat([x_a, x_v])  # J = [X_a; X_v]
    d = D_A + D_V
    branch_a, branch_v = model.audio, model.video
    c_a = torch.tanh(x_a.T @ branch_a.W_j @ j / math.sqrt(d))
    c_v = torch.tanh(x_v.T @ branch_v.W_j @ j / math.sqrt(d))
    h_a = F.relu(branch_a.W.weight @ x_a + branch_a.W_c.weight @ c_a.T)
    h_v = F.relu(branch_v.W.weight @ x_v + branch_v.W_c.weight @ c_v.T)
    x_att_a = branch_a.W_h.weight @ h_a + x_a
    x_att_v = branch_v.W_h.weight @ h_v + x_v
    torch.testing.assert_close(out.attention["C_a"][0], c_a)
    torch.testing.assert_close(out.attention["C_v"][0], c_v)
    torch.testing.assert_close(out.hidden["X_att_a"][0], x_att_a.T)
    torch.testing.assert_close(out.hidden["X_att_v"][0], x_att_v.T)
    # the heads see [X_att,a; X_att,v], not the raw visual (or audio) features
    torch.testing.assert_close(out.hidden["features"][0], torch.cat([x_att_a, x_att_v]).T)
    assert not torch.allclose(out.hidden["features"][0, :, D_A:], video[0])
    assert out.logits.shape == (2, 8) and out.embedding.shape == (2, 7)
    assert out.valence_arousal.shape == (2, L, 2) and out.valence_arousal.abs().max() <= 1.0
    assert out.modality_logits == {}


def test_jca_output_depends_on_both_attended_streams():
    model = jca()
    audio, video = clips()
    out = model(audio, video)
    (out.logits.sum() + out.valence_arousal.sum()).backward()
    # gradients reach W_ha and W_hv: both attended streams are used by the heads
    assert model.audio.W_h.weight.grad.abs().sum() > 0
    assert model.video.W_h.weight.grad.abs().sum() > 0
    # audio reaches the attended *video* stream through J (inter-modal path)
    perturbed = audio.clone()
    perturbed[:, 2] += 1.0
    before = model(audio, video, return_internals=True)
    after = model(perturbed, video, return_internals=True)
    changed = (after.hidden["X_att_v"] - before.hidden["X_att_v"]).abs().amax(-1)
    assert (changed[:, [0, 1, 3, 4]] > 1e-6).any(1).all()  # other windows too: C_v mixes all of J
    assert not torch.allclose(after.logits, before.logits)
    # silencing W_hv (X_att,v = X_v) changes the prediction
    with torch.no_grad():
        model.video.W_h.weight.zero_()
    assert not torch.allclose(model(audio, video).logits, before.logits)


def test_jca_masks_make_padded_windows_irrelevant():
    model = jca()
    audio, video = clips()
    audio_mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    video_mask = torch.tensor([[True] * 4 + [False], [False] + [True] * 4])
    out = model(audio, video, audio_mask, video_mask, return_internals=True)
    noisy_audio, noisy_video = audio.clone(), video.clone()
    noisy_audio[~audio_mask] = float("nan")
    noisy_video[~video_mask] = 1e6
    noisy = model(noisy_audio, noisy_video, audio_mask, video_mask)
    torch.testing.assert_close(noisy.logits, out.logits)
    torch.testing.assert_close(noisy.valence_arousal, out.valence_arousal)
    assert (out.valence_arousal[0, 4] == 0).all()  # neither modality present
    assert (out.hidden["features"][0, 3, :D_A] == 0).all()  # X_att,a is zero where the audio is padded


@pytest.mark.parametrize("correlation, c_shape, h_shape", [("time", (L, L), (3, L)),
                                                          ("features", (D_A, D_A + D_V), (D_A, 3))])
@pytest.mark.parametrize("fused, width", [("attended", D_A + D_V), ("visual", 2 * D_V)])
def test_jca_shapes_of_both_readings(correlation, c_shape, h_shape, fused, width):
    """The equations (C window x window, both attended streams at the heads) and the public code (C feature
    x feature, [X_v; X_att,v] at the heads): every matrix has the shape its reading gives it."""
    model = jca(correlation=correlation, fused=fused)
    audio, video = clips()
    out = model(audio, video, return_internals=True)
    branch = model.audio
    assert out.attention["C_a"].shape == (2, *c_shape)  # k = 3 below
    across, correlated = (D_A, L) if correlation == "time" else (L, D_A + D_V)
    assert branch.W_j.shape == ((D_A, D_A + D_V) if correlation == "time" else (L, L))
    assert (branch.W.weight.shape, branch.W_c.weight.shape, branch.W_h.weight.shape) == \
        ((3, across), (3, correlated), (across, 3))
    if correlation == "time":
        x_a = audio[0].T
        h_a = F.relu(branch.W.weight @ x_a + branch.W_c.weight @ out.attention["C_a"][0].T)
    else:  # the code: C_a = tanh(X_a W_ja J^T / sqrt(d)), H_a = ReLU(X_a W_a + C_a W_ca), X_att = H_a W_ha + X_a
        x_a, j = audio[0].T, torch.cat([audio[0], video[0]], dim=1)
        c_a = torch.tanh(x_a @ branch.W_j @ j / math.sqrt(D_A + D_V))
        torch.testing.assert_close(out.attention["C_a"][0], c_a)
        h_a = F.relu(x_a @ branch.W.weight.T + c_a @ branch.W_c.weight.T)
        torch.testing.assert_close(out.hidden["X_att_a"][0], (h_a @ branch.W_h.weight.T + x_a).T)
    assert h_a.shape == h_shape
    assert out.hidden["X_att_a"].shape == audio.shape and out.hidden["X_att_v"].shape == video.shape
    assert out.hidden["features"].shape == (2, L, width) and out.logits.shape == (2, 8)
    assert out.valence_arousal.shape == (2, L, 2)
    head_input = video if fused == "visual" else out.hidden["X_att_a"]
    torch.testing.assert_close(out.hidden["features"][..., :head_input.shape[-1]], head_input)


def test_jca_code_reading_ignores_the_attended_audio_and_masks_padding():
    model = jca(correlation="features", fused="visual")
    audio, video = clips()
    before = model(audio, video)
    with torch.no_grad():
        model.audio.W_h.weight.add_(1.0)  # changes X_att,a only
    torch.testing.assert_close(model(audio, video).logits, before.logits)
    audio_mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    noisy_audio = audio.clone()
    noisy_audio[~audio_mask] = 1e6
    torch.testing.assert_close(model(noisy_audio, video, audio_mask).logits, model(audio, video, audio_mask).logits)


def test_jca_input_errors():
    model = jca()
    audio, video = clips()
    with pytest.raises(MerError, match="needs both audio and video"):
        model(audio=audio)
    with pytest.raises(MerError, match=r"video windows must be \(batch, 5, 4\)"):
        model(audio, video[:, :4])
    with pytest.raises(MerError, match="must be positive"):
        JcaConfig(n_windows=0)
    with pytest.raises(MerError, match="unknown JCA correlation 'channels'"):
        JcaConfig(correlation="channels")
    with pytest.raises(MerError, match="unknown JCA fused 'audio'"):
        JcaConfig(fused="audio")


# ----------------------------------------------------------------------------- emotion metric loss

RAVDESS = ravdess.CLASSES  # neutral, calm, happy, sad, angry, fearful, disgust, surprised


def on_circle(degrees: list[float]) -> torch.Tensor:
    """Unit 2D embeddings at the given angles: squared distance = 2 - 2 cos(angle between)."""
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def labels_of(*names: str) -> torch.Tensor:
    return torch.tensor([RAVDESS.index(n) for n in names])


def test_polarities_follow_mikels_wheel():
    assert polarities(RAVDESS).tolist() == [0, 1, 1, -1, -1, -1, -1, 1]
    assert polarities(cremad.CLASSES).tolist() == [0, 1, -1, -1, -1, -1]
    assert polarities(["Anger", "surprise", "fear"]).tolist() == [-1, 1, -1]
    with pytest.raises(MerError, match="no emotion polarity for class.*'bored'"):
        polarities(["happy", "bored"])


def test_squared_distances_use_l2_normalised_embeddings():
    x = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0]])
    expected = torch.tensor([[0.0, 2.0, 4.0], [2.0, 0.0, 2.0], [4.0, 2.0, 0.0]])
    torch.testing.assert_close(squared_distances(x), expected)


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_emotion_loss_is_zero_when_both_margins_hold(mining):
    # happy pair at 0/4 deg, calm (related) at 60/64, sad (opposite polarity) at 180/184
    x = on_circle([0, 4, 60, 64, 180, 184])
    y = labels_of("happy", "happy", "calm", "calm", "sad", "sad")
    polarity = polarities(RAVDESS)
    assert emotion_metric_loss(x, y, polarity, 0.2, 0.2, mining).item() == 0.0
    assert triplet_loss(x, y, 0.2, mining).item() == 0.0


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_emotion_loss_is_positive_when_alpha_is_violated(mining):
    # a related calm sample sits between the two happy ones: d(a, p) + alpha > d(a, r1)
    x = on_circle([0, 40, 20, 180])
    y = labels_of("happy", "happy", "calm", "sad")
    polarity = polarities(RAVDESS)
    emotion = emotion_metric_loss(x, y, polarity, 0.2, 0.2, mining)
    plain = triplet_loss(x, y, 0.2, mining)
    assert plain.item() > 0 and emotion.item() == pytest.approx(plain.item())  # only the alpha hinge fires


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_emotion_loss_is_positive_when_beta_is_violated(mining):
    # positives are tight (plain triplet loss zero) but the sad sample (opposite polarity) is nearer
    # to the happy anchors than the calm (related) one: d(a, r2) + beta > d(a, n)
    x = on_circle([0, 2, 90, -80])
    y = labels_of("happy", "happy", "calm", "sad")
    polarity = polarities(RAVDESS)
    assert triplet_loss(x, y, 0.2, mining).item() == 0.0
    emotion = emotion_metric_loss(x, y, polarity, 0.2, 0.2, mining)
    d = lambda degrees: 2 - 2 * math.cos(math.radians(degrees))  # noqa: E731
    if mining == "hard":  # anchors happy (0), happy (2): calm at 90/88 deg, sad at 80/82; calm: satisfied
        expected = (max(0, d(90) - d(80) + 0.2) + max(0, d(88) - d(82) + 0.2) + 0.0) / 3
    else:  # the two happy (anchor, related, negative) hinges and calm's two satisfied ones
        expected = (max(0, d(90) - d(80) + 0.2) + max(0, d(88) - d(82) + 0.2)) / 4
    assert emotion.item() == pytest.approx(expected)


def test_neutral_anchors_use_the_plain_triplet_loss():
    # two neutral anchors; were neutral a positive emotion, calm would be related and sad opposite,
    # and sad (50 deg) nearer than calm (100 deg) would violate beta
    x = on_circle([0, 2, 100, 50])
    y = labels_of("neutral", "neutral", "calm", "sad")
    polarity = polarities(RAVDESS)
    emotion = emotion_metric_loss(x, y, polarity, 0.2, 0.2)
    torch.testing.assert_close(emotion, triplet_loss(x, y, 0.2))
    as_if_positive = polarity.clone()
    as_if_positive[RAVDESS.index("neutral")] = 1
    assert emotion_metric_loss(x, y, as_if_positive, 0.2, 0.2) > emotion
    # neutral samples are no opposite-polarity negatives for a polar anchor either: a neutral sample
    # nearer than the related calm one breaks no constraint
    x = on_circle([0, 1, 30, 60])
    y = labels_of("happy", "happy", "neutral", "calm")
    assert emotion_metric_loss(x, y, polarity, 0.2, 0.2, "all").item() == 0.0
    assert emotion_metric_loss(x, y, polarity, 0.2, 0.2, "hard").item() == 0.0
    # and the plain triplet hinge is active for neutral anchors
    y = labels_of("neutral", "neutral", "calm", "sad")
    squeezed = on_circle([0, 30, 10, 50])
    assert emotion_metric_loss(squeezed, y, polarity, 0.2, 0.2) > 0


def test_no_valid_triplet_gives_zero_with_a_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    y = labels_of("sad", "sad", "sad", "sad")
    loss = emotion_metric_loss(x, y, polarities(RAVDESS))
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None


def test_all_mining_averages_every_valid_triplet():
    x = on_circle([0, 30, 20, 100])
    y = labels_of("angry", "angry", "happy", "happy")
    d = squared_distances(x)
    hinges = [max(0.0, d[a, p] - d[a, n] + 0.5) for a, p in ((0, 1), (1, 0), (2, 3), (3, 2))
              for n in range(4) if y[n] != y[a]]
    assert triplet_loss(x, y, 0.5, "all").item() == pytest.approx(sum(hinges) / len(hinges))


def test_make_loss_combines_cross_entropy_and_metric():
    torch.manual_seed(0)
    embedding = torch.randn(8, 5, requires_grad=True)
    logits = torch.randn(8, 6, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])
    output = SimpleNamespace(logits=logits, embedding=embedding)
    classes = cremad.CLASSES
    cross_entropy = F.cross_entropy(logits, labels)
    softmax = make_loss("softmax", classes)(output, labels)
    torch.testing.assert_close(softmax, cross_entropy)
    triplet = make_loss("triplet", classes, alpha=0.3, weight=0.5)(output, labels)
    torch.testing.assert_close(triplet, cross_entropy + 0.5 * triplet_loss(embedding, labels, 0.3))
    emotion = make_loss("emotion", classes, alpha=0.3, beta=0.4, weight=2.0)(output, labels)
    expected = cross_entropy + 2.0 * emotion_metric_loss(embedding, labels, polarities(classes), 0.3, 0.4)
    torch.testing.assert_close(emotion, expected)
    emotion.backward()
    assert embedding.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0
    with pytest.raises(MerError, match="unknown loss 'arcface'"):
        make_loss("arcface", classes)
    with pytest.raises(MerError, match="margins must be positive"):
        make_loss("emotion", classes, alpha=0.0)
    with pytest.raises(MerError, match="unknown triplet mining"):
        make_loss("emotion", classes, mining="semi")


def test_label_smoothing_softens_the_cross_entropy_targets():
    logits = torch.tensor([[6.0, 0.0, 0.0], [0.0, 5.0, 1.0]])
    labels = torch.tensor([0, 1])
    output = SimpleNamespace(logits=logits)
    smoothed = make_loss("softmax", None, label_smoothing=0.3)(output, labels)
    log_p = F.log_softmax(logits, dim=1)
    targets = 0.7 * F.one_hot(labels, 3) + 0.3 / 3  # (1 - s) one-hot + s uniform
    torch.testing.assert_close(smoothed, -(targets * log_p).sum(1).mean())
    assert smoothed > make_loss("softmax", None)(output, labels)  # confident right answers cost more


# ----------------------------------------------------------------------------- CCC

def test_ccc_of_identical_and_negated_series():
    x = torch.randn(3, 50)
    x = x - x.mean(1, keepdim=True)  # negating a zero-mean series keeps its mean: CCC = -1 exactly
    torch.testing.assert_close(ccc(x, x), torch.ones(3))
    torch.testing.assert_close(ccc(x, -x), -torch.ones(3))
    shifted = ccc(x, x + 1.0)  # perfectly correlated but biased: CCC (unlike Pearson) is below one
    assert (shifted < 0.9).all()


def test_ccc_matches_lins_formula_and_respects_masks():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(40, generator=g), torch.randn(40, generator=g)
    mx, my = x.mean(), y.mean()
    expected = 2 * ((x - mx) * (y - my)).mean() / (x.var(unbiased=False) + y.var(unbiased=False) + (mx - my) ** 2)
    torch.testing.assert_close(ccc(x, y), expected)
    mask = torch.arange(50) < 40
    padded_x = torch.cat([x, torch.full((10,), 99.0)])
    padded_y = torch.cat([y, torch.full((10,), -99.0)])
    torch.testing.assert_close(ccc(padded_x, padded_y, mask), expected)


def test_ccc_loss_range_and_masks():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 6, 2, generator=g) * 2 - 1
    target = target - target.mean((0, 1))  # zero mean per dimension, so -target has CCC -1
    assert ccc_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert ccc_loss(-target, target).item() == pytest.approx(2.0, abs=1e-6)
    for seed in range(5):
        pred = torch.rand(4, 6, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        assert 0.0 <= ccc_loss(pred, target).item() <= 2.0
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 4:] = False
    noisy = target.clone()
    noisy[:, 4:] = 5.0
    assert ccc_loss(noisy, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert ccc_loss(noisy, target).item() > 0.1
    with pytest.raises(MerError, match="one shape"):
        ccc_loss(target, target[:, :3])
