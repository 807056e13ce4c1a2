"""The data set registry: ``DATASETS`` maps a name to its builder, ``build_dataset`` validates and builds.

Real data sets (``mnist``, ``fashion_mnist``, ``cifar10``, ``text_lm``) read a local ``root``; nothing
is ever downloaded. Embedded ones (``teacher``, ``teacher_regression``, ``synthetic_images``,
``markov_lm``, ``linear_regression``) are generated from a seed and ignore ``root``; ``digits`` (real
images) ships inside scikit-learn, an optional dependency, and ignores ``root`` too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from nnbench.data.cifar import cifar10
from nnbench.data.digits import digits
from nnbench.data.language import markov_lm, text_lm
from nnbench.data.linear_regression import linear_regression
from nnbench.data.mnist import fashion_mnist, mnist
from nnbench.data.source import DataSource
from nnbench.data.synthetic import synthetic_images, teacher, teacher_regression

__all__ = ["DATASETS", "EMBEDDED_DATASETS", "build_dataset", "dataset_kwargs"]

DATASETS: dict[str, Callable[..., DataSource]] = {
    "teacher": teacher,
    "teacher_regression": teacher_regression,
    "synthetic_images": synthetic_images,
    "markov_lm": markov_lm,
    "linear_regression": linear_regression,
    "digits": digits,
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "text_lm": text_lm,
}

# Data sets that need no local files.
EMBEDDED_DATASETS = (
    "teacher", "teacher_regression", "synthetic_images", "markov_lm", "linear_regression", "digits",
)


def dataset_kwargs(name: str) -> tuple[str, ...]:
    """The keyword arguments data set ``name`` accepts besides ``root`` and ``device``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set name={name!r}; known: {sorted(DATASETS)}")
    params = inspect.signature(DATASETS[name]).parameters
    return tuple(p for p in params if p not in ("root", "device"))


def build_dataset(name: str, *, root: str | None = None, device="cpu", **kwargs) -> DataSource:
    """Build data set ``name`` on ``device``.

    Args:
        name: a key of ``DATASETS``.
        root: local folder (or file, for ``text_lm``) holding a real data set; unused by embedded ones.
        device: ``"cpu"``, ``"cuda"``, ... where every tensor lives and every batch is made.
        **kwargs: the builder's own options (``dataset_kwargs(name)`` lists them).
    Raises:
        ValueError: unknown name or option (the message lists the known ones), or a bad value.
        FileNotFoundError: a real data set's files are missing.
    """
    allowed = dataset_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for data set {name!r}; it accepts {list(allowed)}")
    return DATASETS[name](root=root, device=device, **kwargs)
