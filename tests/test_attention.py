"""The one masked multi-head self-attention of MATER and the cross-modal model (mer_lib.models.attention)."""
from __future__ import annotations

import math

import torch

from mer_lib.models.attention import MultiHeadSelfAttention, masked_softmax


def test_masked_softmax_gives_exact_zeros_and_an_all_zero_row_without_allowed_entries():
    scores = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    allowed = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(scores, allowed, dim=-1)
    torch.testing.assert_close(weights[0], torch.softmax(torch.tensor([1.0, -math.inf, 3.0]), -1))
    assert weights[0, 1] == 0 and (weights[1] == 0).all()


def test_attention_with_biases_and_masks_follows_the_formula_and_stays_finite():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(6, 6, n_heads=2, bias=True)
    x = torch.randn(3, 4, 6, requires_grad=True)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [False] * 4])
    out, weights = attention(x, mask)
    q, k, v = (part.view(3, 4, 2, 3).transpose(1, 2) for part in attention.w_qkv(x).chunk(3, dim=-1))
    scores = (q @ k.transpose(-2, -1) / math.sqrt(3)).masked_fill(~mask[:, None, None, :], -math.inf)
    expected = torch.softmax(scores[:2], -1)
    torch.testing.assert_close(weights[:2], expected)
    assert (weights[2] == 0).all()  # a clip without valid windows attends to nothing
    heads = (weights @ v).transpose(1, 2).reshape(3, 4, 6)
    torch.testing.assert_close(out, heads @ attention.w_o.weight.T + attention.w_o.bias)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_weights_saved_under_the_cross_modal_models_old_name_w_0_still_load():
    attention = MultiHeadSelfAttention(6, 4, n_heads=2)
    old = {"w_qkv.weight": torch.randn(18, 6), "w_0.weight": torch.randn(4, 6)}
    attention.load_state_dict(old)
    assert torch.equal(attention.w_o.weight, old["w_0.weight"]) and set(attention.state_dict()) == {
        "w_qkv.weight", "w_o.weight"}
