"""scikit-learn's handwritten digits: 1,797 real 8x8 images, 10 classes, no download.

The images are the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin and Kaynak
1998) as shipped inside scikit-learn (``sklearn.datasets.load_digits``, read from the installed
package): 32x32 bitmaps of 43 writers, each 4x4 block counted, so a pixel is an integer in [0, 16].

Split (fixed, stratified, seeded): for each class the examples are permuted with
``numpy.random.default_rng(seed)`` (seed 0 by default, one permutation per class in class order) and
the first ``num_validation // 10`` of them validate; the rest train. With the default
``num_validation=400`` that is 40 validation images per digit: **1,397 train / 400 validation**, every
class equally represented in validation. There is no test split (the set is small; the workloads'
targets are validation accuracies, as in Shallue et al. 2018).

Standardisation: pixels are divided by 16 (to [0, 1]), then the training split's mean pixel value is
subtracted and the result divided by the training split's pixel standard deviation (two scalars, so
no validation information leaks in and the images keep their shape). Tensors are float32
``(N, 1, 8, 8)``; labels int64.

scikit-learn is an optional dependency of nnbench (the ``nn``, ``test`` and ``dev`` extras), imported
only when this data set is built.
"""

from __future__ import annotations

import numpy as np
import torch

from nnbench.data.source import TensorDataSource, check_positive_int, check_seed

__all__ = ["DIGITS_CLASSES", "digits", "digits_split", "load_digits_arrays"]

DIGITS_CLASSES = 10


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as (images float64 (N, 8, 8) in [0, 16], labels int64 (N,)), from scikit-learn.

    Raises:
        ImportError: scikit-learn is not installed (the message says how to install it).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("data set 'digits' needs scikit-learn, which is not installed: "
                          "pip install 'nqm-bench[nn]' (or pip install scikit-learn)") from None
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def digits_split(labels: np.ndarray, num_validation: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of the stratified split described in the module docstring.

    ``num_validation`` must be a positive multiple of the number of classes, below the smallest
    class's size times the number of classes; both index arrays are sorted.
    """
    classes = np.unique(labels)
    per_class = num_validation // classes.size
    smallest = min(int(np.sum(labels == c)) for c in classes)
    if num_validation % classes.size or not 0 < per_class < smallest:
        raise ValueError(f"num_validation must be a multiple of {classes.size} (the classes) between "
                         f"{classes.size} and {classes.size * (smallest - 1)}, got {num_validation!r}")
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes])
    is_val = np.zeros(labels.size, dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def digits(*, root=None, device="cpu", num_validation: int = 400, seed: int = 0) -> TensorDataSource:
    """scikit-learn's 8x8 handwritten digits: 1,397 train / 400 validation (see the module docstring).

    Args:
        root: unused (the data ship with scikit-learn). device: where the tensors live.
        num_validation: validation images, a multiple of 10 (default 400: 40 per digit).
        seed: fixes the stratified split (default 0).
    """
    num_validation = check_positive_int(num_validation, "num_validation")
    seed = check_seed(seed)
    images, labels = load_digits_arrays()
    train, val = digits_split(labels, num_validation, seed)
    x = torch.from_numpy(images / 16.0).to(torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    y = torch.from_numpy(labels)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    splits = {"train": (x[train], y[train]), "validation": (x[val], y[val])}
    return TensorDataSource(name="digits", task="classification", splits=splits,
                            num_outputs=DIGITS_CLASSES, device=device)
