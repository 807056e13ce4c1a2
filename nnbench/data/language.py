"""Language-model data that needs no download: a random Markov chain language, or a local text file.

Both give next-token prediction pairs ``x = tokens[:, :-1]``, ``y = tokens[:, 1:]`` (int64, shape
(N, T)), task ``"language_model"``, ``num_outputs`` = vocabulary size; the model returns logits
(N, T, vocab) and the metric is per-token cross entropy in nats (Zhang et al. 2019 measure the
Transformer on LM1B by cross entropy).

``markov_lm``: sequences from a fixed random first-order Markov chain over ``vocab_size`` tokens (each
row of the transition matrix ~ Dirichlet(``concentration``), seeded; the first token of each sequence is
drawn from the stationary distribution, so every position is stationary). The best achievable expected
cross entropy is then exactly the chain's entropy rate ``H = -sum_i pi_i sum_j P_ij log P_ij`` nats per
token (``source.chain.entropy_rate``), which makes a principled target. ``num_train=None`` makes it
online (fresh sequences every batch, the NQM's assumption); otherwise a fixed set is sampled once.

``text_lm``: the bytes of a local text file (vocabulary 256, any encoding), cut into sequences of
``seq_len + 1`` tokens with stride ``seq_len`` (so every next-byte pair is used once); the last
``validation_fraction`` of the file is ``"validation"`` (a contiguous tail, so no sentence is shared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nnbench.data.source import (
    OnlineDataSource,
    TensorDataSource,
    check_nonneg_float,
    check_positive_int,
    check_seed,
    derive_seed,
)

__all__ = ["MarkovChain", "MarkovLMSource", "OnlineMarkovLMSource", "markov_lm", "random_markov_chain",
           "text_lm"]


@dataclass(frozen=True)
class MarkovChain:
    """A first-order Markov chain over ``vocab_size`` tokens (numpy float64 arrays).

    Attributes:
        transition: P (V, V), row i = distribution of the token after token i.
        stationary: pi (V,), pi P = pi.
        entropy_rate: -sum_i pi_i sum_j P_ij log P_ij, nats per token: the lowest expected
            next-token cross entropy any model can reach on stationary sequences.
    """

    transition: np.ndarray
    stationary: np.ndarray
    entropy_rate: float

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[0]


def random_markov_chain(vocab_size: int, concentration: float, seed: int) -> MarkovChain:
    """Rows ~ Dirichlet(concentration * 1); all entries > 0, so the chain is ergodic (unique pi)."""
    rng = np.random.default_rng(derive_seed(seed, 4))
    p = rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size)
    # Dirichlet draws with small concentration can underflow to exact zeros; keep the chain ergodic.
    p = np.maximum(p, 1e-12)
    p /= p.sum(axis=1, keepdims=True)
    # Stationary distribution: left eigenvector of P for eigenvalue 1.
    vals, vecs = np.linalg.eig(p.T)
    pi = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
    pi = np.abs(pi) / np.abs(pi).sum()
    entropy_rate = float(-(pi[:, None] * p * np.log(p)).sum())
    return MarkovChain(transition=p, stationary=pi, entropy_rate=entropy_rate)


def _cdfs(chain: MarkovChain, device) -> tuple[Tensor, Tensor]:
    # float64 cumulative sums with the last entry forced to 1, so a uniform u in [0, 1) always lands.
    cdf = np.cumsum(chain.transition, axis=1)
    cdf[:, -1] = 1.0
    first = np.cumsum(chain.stationary)
    first[-1] = 1.0
    return torch.from_numpy(cdf).to(device), torch.from_numpy(first).to(device)


def _sample_sequences(cdf: Tensor, first_cdf: Tensor, n: int, length: int,
                      generator: torch.Generator) -> Tensor:
    """``n`` chain sequences of ``length`` tokens (int64, (n, length)) by inverse-CDF sampling; the loop
    runs over positions only, each step vectorised over the n sequences."""
    u = torch.rand(length, n, generator=generator, device=cdf.device, dtype=cdf.dtype)  # (T, n)
    tokens = torch.empty(length, n, dtype=torch.int64, device=cdf.device)
    tokens[0] = torch.searchsorted(first_cdf, u[0], right=True)
    for t in range(1, length):
        rows = cdf[tokens[t - 1]]  # (n, V): the current token's next-token CDF
        tokens[t] = torch.searchsorted(rows, u[t, :, None], right=True)[:, 0]
    return tokens.T.contiguous()  # (n, T)


class MarkovLMSource(TensorDataSource):
    """A finite ``markov_lm`` data set; ``chain`` is the generating Markov chain."""

    def __init__(self, *, chain: MarkovChain, **kwargs) -> None:
        super().__init__(**kwargs)
        self.chain = chain


class OnlineMarkovLMSource(OnlineDataSource):
    """``markov_lm`` with fresh sequences every batch (``num_train = None``)."""

    def __init__(self, *, chain: MarkovChain, seq_len: int, seed: int, num_eval: int, device) -> None:
        super().__init__(num_eval=num_eval, eval_seed=derive_seed(seed, 2), device=device)
        self.name = "markov_lm"
        self.task = "language_model"
        self.chain = chain
        self.input_shape = (seq_len,)
        self.num_outputs = chain.vocab_size
        self._cdf, self._first = _cdfs(chain, self.device)

    def _move(self, device: torch.device) -> None:
        self._cdf, self._first = self._cdf.to(device), self._first.to(device)

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        tokens = _sample_sequences(self._cdf, self._first, n, self.input_shape[0] + 1, generator)
        return tokens[:, :-1], tokens[:, 1:]


def markov_lm(*, root=None, device="cpu", vocab_size: int = 64, seq_len: int = 32,
              concentration: float = 0.1, num_train: int | None = 20_000, num_validation: int = 2000,
              seed: int = 0) -> MarkovLMSource | OnlineMarkovLMSource:
    """Synthetic language from a fixed random Markov chain (see the module docstring).

    Args:
        root: unused (embedded data). device: where the tensors live and batches are drawn.
        vocab_size: V tokens. seq_len: T, the model's input length (sequences hold T + 1 tokens).
        concentration: Dirichlet parameter of each transition row; smaller = more predictable text
            (lower entropy rate).
        num_train: training sequences, or None for an online source.
        num_validation: held-out sequences. seed: fixes the chain and the sampled sets.
    """
    vocab_size = check_positive_int(vocab_size, "vocab_size", 2)
    seq_len = check_positive_int(seq_len, "seq_len")
    concentration = check_nonneg_float(concentration, "concentration")
    if concentration == 0.0:
        raise ValueError("concentration must be > 0")
    seed = check_seed(seed)
    num_validation = check_positive_int(num_validation, "num_validation")
    chain = random_markov_chain(vocab_size, concentration, seed)
    if num_train is None:
        return OnlineMarkovLMSource(chain=chain, seq_len=seq_len, seed=seed, num_eval=num_validation,
                                    device=device)
    num_train = check_positive_int(num_train, "num_train")
    cdf, first = _cdfs(chain, "cpu")
    gen = torch.Generator().manual_seed(derive_seed(seed, 5))
    tokens = _sample_sequences(cdf, first, num_train + num_validation, seq_len + 1, gen)
    splits = {"train": (tokens[:num_train, :-1], tokens[:num_train, 1:]),
              "validation": (tokens[num_train:, :-1], tokens[num_train:, 1:])}
    return MarkovLMSource(chain=chain, name="markov_lm", task="language_model", splits=splits,
                          num_outputs=vocab_size, device=device)


def text_lm(*, root=None, device="cpu", path: str | None = None, seq_len: int = 128,
            validation_fraction: float = 0.1) -> TensorDataSource:
    """Byte-level language modelling on a local text file (vocabulary 256).

    Args:
        root, path: the text file (``path`` wins; ``root`` is accepted so that a single ``--data-root``
            option can point at it). device: where the tensors live.
        seq_len: T, model input length. validation_fraction: share in (0, 1) of the sequences, taken
            from the end of the file, held out as ``"validation"``.
    """
    file = path if path is not None else root
    if file is None:
        raise ValueError("data set 'text_lm' reads a local text file: pass path=<file> (or root=<file>)")
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"text file not found: {file}")
    seq_len = check_positive_int(seq_len, "seq_len")
    frac = check_nonneg_float(validation_fraction, "validation_fraction", 1.0)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    data = np.frombuffer(file.read_bytes(), dtype=np.uint8)
    num_seq = (data.size - 1) // seq_len if data.size > 0 else 0
    if num_seq < 2:
        raise ValueError(f"{file}: {data.size} bytes is too short for two sequences of seq_len + 1 = "
                         f"{seq_len + 1} tokens (one to train, one to validate); use a smaller seq_len")
    num_val = min(max(1, math.ceil(frac * num_seq)), num_seq - 1)
    starts = np.arange(num_seq) * seq_len
    seqs = torch.from_numpy(data[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
    cut = num_seq - num_val
    splits = {"train": (seqs[:cut, :-1], seqs[:cut, 1:]), "validation": (seqs[cut:, :-1], seqs[cut:, 1:])}
    return TensorDataSource(name="text_lm", task="language_model", splits=splits, num_outputs=256,
                            device=device)
