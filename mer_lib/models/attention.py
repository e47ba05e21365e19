"""The one masked attention of the models: `masked_softmax` and multi-head scaled dot-product self-attention.

MATER's encoder layers (Ghaleb et al. 2023, section 3.2.4, after Vaswani et al. 2017) and the cross-modal
model's VS, VC, VT and AT modules (Mocanu et al. 2023, eqs. 1-6) attend the same way:

    MultiHead(X) = Concat(head_1 .. head_H) W^O,   head_h = softmax(Q_h K_h^T / sqrt(d_h)) V_h,
    Q_h = X W_h^Q, K_h = X W_h^K, V_h = X W_h^V,

written out (rather than nn.MultiheadAttention) so that the per-head weights are returned for the
analyses and figures. They differ only in sizes and biases: MATER keeps d_out = d_in and biases, the
cross-modal model maps to m' (eq. 6) without biases (none in its equations). The cross-modal model's
fusion (eqs. 7-10) and its masks use `masked_softmax` too. Masked keys get weight exactly zero, and a
query with no valid key gets all-zero weights: finite, so a missing modality never turns into NaN,
forward or backward.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, allowed: Tensor, dim: int) -> Tensor:
    """softmax of `scores` along `dim` over the `allowed` entries (bool, broadcastable); exact zeros elsewhere.

    A slice with nothing allowed gets all-zero weights, so padded or missing windows stay finite.
    """
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim).masked_fill(~allowed, 0.0)


class MultiHeadSelfAttention(nn.Module):
    """Concat_h(softmax(Q_h K_h^T / sqrt(d_h)) V_h) W^O over the L tokens of each row; d_h = ceil(d_in / H).

    d_h is d_in / H whenever H divides d_in (MATER requires it; the cross-modal channel module attends
    over s = h w = 196 features, which 8 heads do not divide). `w_qkv` packs W^Q, W^K and W^V of all
    heads, `w_o` is W^O (d_out x H d_h).
    """

    def __init__(self, d_in: int, d_out: int, n_heads: int, bias: bool = False):
        super().__init__()
        self.n_heads, self.d_head = n_heads, math.ceil(d_in / n_heads)
        self.w_qkv = nn.Linear(d_in, 3 * n_heads * self.d_head, bias=bias)
        self.w_o = nn.Linear(n_heads * self.d_head, d_out, bias=bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (n, L, d_in), mask (n, L) of valid tokens (None: all) -> (n, L, d_out) and the weights (n, H, L, L)."""
        n, length, _ = x.shape
        q, k, v = (part.view(n, length, self.n_heads, self.d_head).transpose(1, 2)
                   for part in self.w_qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        weights = torch.softmax(scores, dim=-1) if mask is None else masked_softmax(scores, mask[:, None, None, :], -1)
        heads = (weights @ v).transpose(1, 2).reshape(n, length, self.n_heads * self.d_head)
        return self.w_o(heads), weights

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Read checkpoints of the cross-modal model written before its attention was this module: they
        name W^O "w_0" (Mocanu et al.'s W_0), so their weights load without a new model revision."""
        for part in ("weight", "bias"):
            if f"{prefix}w_0.{part}" in state_dict:
                state_dict[f"{prefix}w_o.{part}"] = state_dict.pop(f"{prefix}w_0.{part}")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
