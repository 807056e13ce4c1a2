"""A small decoder-only Transformer language model (Zhang et al. 2019, appendix E.2).

The paper uses the "Transformer Shallow" of Shallue et al. (2018): Vaswani et al.'s (2017) base model
with two layers instead of six, on LM1B. We keep its structure at a size a CPU can train: token
embedding scaled by sqrt(d_model), learned positional embedding, ``num_layers`` pre-LayerNorm blocks
(tensor2tensor's default layer order) of causal multi-head self-attention and a ReLU feed-forward layer,
a final LayerNorm, and an output layer that shares the embedding matrix (``tie_embeddings``, as in
Vaswani et al. section 3.4; Zhang et al. appendix A.1 derive K-FAC for this shared weight). No dropout,
so the training objective is the same at every step and batch size.

Attention and feed-forward projections are plain ``nn.Linear`` modules (not ``nn.MultiheadAttention``)
so that optimizers with per-layer hooks (K-FAC) see every weight. The output layer ``head`` is an
``nn.Linear`` whose weight IS ``embed.weight`` when tied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnbench.models.cnn import _positive

__all__ = ["TransformerLM", "transformer"]


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (B, T, D)
        q, k, v = (z.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)
                   for z in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_ff: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, num_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


class TransformerLM(nn.Module):
    """tokens (N, T) int64 -> next-token logits (N, T, vocab_size); T <= max_len."""

    def __init__(self, vocab_size: int, max_len: int, d_model: int, num_heads: int, d_ff: int,
                 num_layers: int, tie_embeddings: bool) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.zeros(max_len, d_model))
        self.blocks = nn.Sequential(*(Block(d_model, num_heads, d_ff) for _ in range(num_layers)))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Embedding entries ~ N(0, 1/d_model): times sqrt(d_model) the input has unit scale, and the
        # tied output layer gives logits of unit scale from a layer-normalized state (tensor2tensor).
        nn.init.normal_(self.embed.weight, 0.0, d_model ** -0.5)
        nn.init.normal_(self.pos, 0.0, 1.0)  # same scale as the token input, like Vaswani's sinusoids
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds the model's max_len={self.max_len}")
        x = self.embed(tokens) * math.sqrt(self.d_model) + self.pos[:t]  # (N, T, D)
        x = self.ln_f(self.blocks(x))
        return self.head(x)  # (N, T, vocab)


def transformer(input_shape: tuple[int, ...], num_outputs: int, *, d_model: int = 128, num_heads: int = 4,
                d_ff: int | None = None, num_layers: int = 2, max_len: int | None = None,
                tie_embeddings: bool = True) -> TransformerLM:
    """Small Transformer LM for token sequences of shape (T,) and a vocabulary of ``num_outputs``.

    Args:
        d_model: model width (512 in Vaswani et al.'s base model; 128 keeps it CPU-sized).
        num_heads: attention heads (must divide d_model). d_ff: feed-forward width (default 4 d_model).
        num_layers: blocks (2 in the paper). max_len: longest sequence (default T = input_shape[0]).
        tie_embeddings: share the input embedding and the output layer's weight (paper: yes).
    """
    if len(input_shape) != 1:
        raise ValueError(f"input_shape for 'transformer' must be (T,) token ids, got {tuple(input_shape)}")
    d_model = _positive(d_model, "d_model")
    num_heads = _positive(num_heads, "num_heads")
    if d_model % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
    d_ff = 4 * d_model if d_ff is None else _positive(d_ff, "d_ff")
    num_layers = _positive(num_layers, "num_layers")
    max_len = input_shape[0] if max_len is None else _positive(max_len, "max_len")
    if max_len < input_shape[0]:
        raise ValueError(f"max_len={max_len} is shorter than the input length {input_shape[0]}")
    return TransformerLM(num_outputs, max_len, d_model, num_heads, d_ff, num_layers, bool(tie_embeddings))
