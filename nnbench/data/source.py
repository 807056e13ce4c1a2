"""The DataSource interface and its two concrete families: finite resident tensors and online samplers.

Every data set lives on ``source.device`` as whole tensors; a training batch is an index slice of those
tensors (finite sets) or a fresh draw made on the device (online sets), so no DataLoader, worker process
or host-to-device copy sits in the training hot path (as in cifar10-airbench).

Finite sets follow Shallue et al. (2018): training runs in shuffled epochs (``torch.randperm`` on the
device, a ``torch.Generator`` seeded by the stream's ``seed``), each epoch cut into ``num_train //
batch_size`` full batches; the ragged tail of an epoch is dropped so that every step sees exactly
``batch_size`` examples (steps to result counts steps of a fixed batch size).

Online sets match the noisy quadratic model's online assumption (Zhang et al. 2019, section 3): every
batch is a fresh, independent sample, so there are no epochs and ``num_train`` is ``None``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TASKS",
    "DataSource",
    "OnlineDataSource",
    "StackedStream",
    "TensorDataSource",
    "check_batch_size",
    "check_nonneg_float",
    "check_positive_int",
    "check_seed",
    "derive_seed",
    "resolve_device",
]

TASKS = ("classification", "language_model", "regression")

# augment(x, generator) -> x', batched on x's device; used on training batches only.
Augment = Callable[[Tensor, torch.Generator], Tensor]


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; a CUDA device without CUDA is a ValueError, not a late crash."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available on this machine")
    return dev


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` as a positive int, else ValueError naming the argument."""
    return check_positive_int(batch_size, "batch_size")


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` as a non-negative int (what ``torch.Generator.manual_seed`` takes), else ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nonneg_float(value, name: str, upper: float = math.inf) -> float:
    """``value`` as a finite float in [0, ``upper``], else ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    if not (math.isfinite(v) and 0.0 <= v <= upper):
        raise ValueError(f"{name} must be finite and in [0, {upper}], got {value!r}")
    return v


def derive_seed(*entropy: int) -> int:
    """A 63-bit seed mixed from integers (numpy SeedSequence), so that streams keyed differently
    (teacher weights, held-out set, training stream ``seed``) never share random numbers."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0]) >> 1


def _generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


class StackedStream:
    """The training batches of several streams at once (the members of an ensemble, ``nnbench.ensemble``).

    ``next()`` gives ``(x, y)`` of shapes ``(K, B, ...)``: row ``k`` is, bit for bit, the next batch of
    ``train_stream(batch_size, seeds[k])`` (each member draws with its own generator, in its own order);
    ``keep(rows)`` keeps the members at positions ``rows`` only. Built by ``DataSource.train_streams``.
    """

    def __init__(self, draw: Callable[[list], tuple[Tensor, Tensor]], states: Sequence) -> None:
        self._draw = draw
        self._states = list(states)

    def __iter__(self) -> StackedStream:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        return self._draw(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep the members at positions ``rows`` (in that order)."""
        self._states = [self._states[k] for k in rows]


def _stacked(batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Batches ``(x, y)`` stacked along a new leading member axis."""
    xs, ys = zip(*batches, strict=True)
    return torch.stack(xs), torch.stack(ys)


class DataSource(abc.ABC):
    """A data set resident on one device.

    Attributes:
        name: registry name (``nnbench.data.DATASETS``).
        task: ``"classification"``, ``"language_model"`` or ``"regression"``.
        input_shape: shape of one example: ``(C, H, W)`` images, ``(T,)`` token ids, ``(D,)`` vectors.
        num_outputs: classes, vocabulary size, or output dimension (regression).
        num_train: training examples (sequences for language models); ``None`` for online sources.
        device: where every tensor of the source lives and every batch is produced.
        splits: the names ``eval_data`` accepts.
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    num_outputs: int
    num_train: int | None
    device: torch.device
    splits: tuple[str, ...]

    @abc.abstractmethod
    def to(self, device: str | torch.device) -> DataSource:
        """Move every resident tensor to ``device`` (in place, like ``nn.Module.to``); returns self."""

    @abc.abstractmethod
    def train_stream(self, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Infinite iterator of training batches ``(x, y)`` on ``self.device``, reproducible for ``seed``."""

    def train_streams(self, batch_size: int, seeds: Sequence[int]) -> StackedStream:
        """The streams ``train_stream(batch_size, seed)`` of every seed of ``seeds`` at once, their
        batches stacked (``StackedStream``). Sources override it to draw all members' batches with
        fewer operations, never changing a member's batch."""
        streams = [self.train_stream(batch_size, seed) for seed in seeds]
        return StackedStream(lambda kept: _stacked(next(s) for s in kept), streams)

    @abc.abstractmethod
    def eval_data(self, split: str = "validation") -> tuple[Tensor, Tensor]:
        """The whole evaluation split ``(x, y)`` on ``self.device``."""

    def _check_split(self, split: str) -> str:
        if split not in self.splits:
            raise ValueError(f"split must be one of {list(self.splits)} for data set {self.name!r}, "
                             f"got {split!r}")
        return split

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, task={self.task!r}, "
                f"input_shape={self.input_shape}, num_outputs={self.num_outputs}, "
                f"num_train={self.num_train}, device={str(self.device)!r})")


class TensorDataSource(DataSource):
    """A finite data set held as whole tensors, one ``(x, y)`` pair per split.

    ``train_stream`` shuffles the ``"train"`` split once per epoch on the device and slices batches of
    exactly ``batch_size`` examples (the ragged tail of each epoch is dropped); ``augment`` (if any) is
    applied to each training batch on the device with the stream's generator. ``eval_data`` returns a
    split unaugmented. Every split must contain ``"train"`` and ``"validation"``.
    """

    def __init__(self, *, name: str, task: str, splits: Mapping[str, tuple[Tensor, Tensor]],
                 num_outputs: int, augment: Augment | None = None,
                 device: str | torch.device = "cpu") -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        for needed in ("train", "validation"):
            if needed not in splits:
                raise ValueError(f"splits must contain {needed!r}, got {list(splits)}")
        for split, (x, y) in splits.items():
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"split {split!r}: {x.shape[0]} inputs but {y.shape[0]} targets")
            if x.shape[0] == 0:
                raise ValueError(f"split {split!r} is empty")
        dev = resolve_device(device)
        self.name = name
        self.task = task
        self.num_outputs = int(num_outputs)
        self.augment = augment
        self._splits = {k: (x.to(dev), y.to(dev)) for k, (x, y) in splits.items()}
        self.splits = tuple(self._splits)
        self.input_shape = tuple(self._splits["train"][0].shape[1:])
        self.num_train = int(self._splits["train"][0].shape[0])
        self.device = dev

    def to(self, device: str | torch.device) -> TensorDataSource:
        dev = resolve_device(device)
        self._splits = {k: (x.to(dev), y.to(dev)) for k, (x, y) in self._splits.items()}
        self.device = dev
        return self

    def train_stream(self, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        gen = self._train_generator(batch_size, seed)
        return self._stream(self._indices(batch_size, gen), gen)

    def train_streams(self, batch_size: int, seeds: Sequence[int]) -> StackedStream:
        # one gather of every member's examples; augmentation per member, with its generator
        gens = [self._train_generator(batch_size, seed) for seed in seeds]
        return StackedStream(self._draw_members, [(self._indices(batch_size, g), g) for g in gens])

    def _train_generator(self, batch_size: int, seed: int) -> torch.Generator:
        batch_size = check_batch_size(batch_size)
        seed = check_seed(seed)
        if batch_size > self.num_train:
            # With the ragged tail dropped an epoch would hold no batch at all.
            raise ValueError(f"batch_size={batch_size} exceeds the {self.num_train} training examples "
                             f"of data set {self.name!r}")
        return _generator(seed, self.device)

    def _indices(self, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
        """The example indices of each training batch: shuffled epochs, ragged tails dropped."""
        per_epoch = self.num_train // batch_size
        while True:
            perm = torch.randperm(self.num_train, generator=gen, device=self.device)
            for i in range(per_epoch):
                yield perm[i * batch_size:(i + 1) * batch_size]

    def _stream(self, indices: Iterator[Tensor], gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        x_all, y_all = self._splits["train"]
        for idx in indices:
            x, y = x_all[idx], y_all[idx]
            if self.augment is not None:
                x = self.augment(x, gen)
            yield x, y

    def _draw_members(self, states: list[tuple[Iterator[Tensor], torch.Generator]]) -> tuple[Tensor, Tensor]:
        x_all, y_all = self._splits["train"]
        idx = torch.stack([next(indices) for indices, _ in states])  # (K, B)
        x, y = x_all[idx], y_all[idx]
        if self.augment is not None:
            x = torch.stack([self.augment(x[k], gen) for k, (_, gen) in enumerate(states)])
        return x, y

    def eval_data(self, split: str = "validation") -> tuple[Tensor, Tensor]:
        return self._splits[self._check_split(split)]


class OnlineDataSource(DataSource):
    """An infinite data distribution: every training batch is a fresh sample (``num_train = None``).

    Subclasses implement ``_sample(n, generator)`` returning ``(x, y)`` on the generator's device, and
    set the descriptive attributes. The ``"validation"`` split is a fixed held-out sample of
    ``num_eval`` examples drawn once on the CPU from ``eval_seed`` (the same set on every device).
    Training streams draw on ``self.device`` with a generator seeded by the stream's ``seed``; CPU and
    CUDA generators differ, so a seed gives a different (equally valid) stream on each device type.
    """

    splits = ("validation",)
    num_train = None

    def __init__(self, *, num_eval: int, eval_seed: int, device: str | torch.device) -> None:
        self.device = resolve_device(device)
        self.num_eval = check_positive_int(num_eval, "num_eval")
        self._eval_seed = check_seed(eval_seed, "eval_seed")
        self._eval: tuple[Tensor, Tensor] | None = None

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` fresh examples on ``generator.device``."""

    @abc.abstractmethod
    def _move(self, device: torch.device) -> None:
        """Move the distribution's own tensors (teacher weights, transition table) to ``device``."""

    def to(self, device: str | torch.device) -> OnlineDataSource:
        dev = resolve_device(device)
        self._move(dev)
        if self._eval is not None:
            self._eval = (self._eval[0].to(dev), self._eval[1].to(dev))
        self.device = dev
        return self

    def train_stream(self, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._stream(check_batch_size(batch_size), self._train_generator(seed))

    def train_streams(self, batch_size: int, seeds: Sequence[int]) -> StackedStream:
        batch_size = check_batch_size(batch_size)
        return StackedStream(lambda gens: self._sample_members(batch_size, gens),
                             [self._train_generator(seed) for seed in seeds])

    def _train_generator(self, seed: int) -> torch.Generator:
        # Mixing the seed keeps training streams disjoint from the held-out stream (eval_seed).
        return _generator(derive_seed(check_seed(seed), 1), self.device)

    def _stream(self, batch_size: int, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self._sample(batch_size, gen)

    def _sample_members(self, n: int, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
        """``n`` fresh examples per generator, stacked ``(K, n, ...)``: row ``k`` bit for bit
        ``_sample(n, generators[k])``. Subclasses may batch the work (``TeacherSource``)."""
        return _stacked(self._sample(n, gen) for gen in generators)

    def eval_data(self, split: str = "validation") -> tuple[Tensor, Tensor]:
        self._check_split(split)
        if self._eval is None:
            # Drawn on the CPU so that the held-out set is identical on every device.
            cpu = torch.device("cpu")
            self._move(cpu)
            x, y = self._sample(self.num_eval, _generator(self._eval_seed, cpu))
            self._move(self.device)
            self._eval = (x.to(self.device), y.to(self.device))
        return self._eval
