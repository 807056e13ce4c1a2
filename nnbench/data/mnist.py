"""MNIST and Fashion-MNIST from a local folder of IDX files (nothing is downloaded).

Expected files in ``root`` (each may also be gzipped with a ``.gz`` suffix; both data sets use the same
names): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``.

Splits (Shallue et al. 2018, appendix A.1; Zhang et al. 2019, Table 1 "MNIST 55,000"): the first
``N - num_validation`` training examples are ``"train"`` (55,000 of the official 60,000), the last
``num_validation`` (5,000) are ``"validation"``, and the official 10,000 test examples are ``"test"``.
Pixels are scaled to [0, 1] float32, shape ``(N, 1, 28, 28)``; ``standardize=True`` further subtracts
the training split's pixel mean and divides by its standard deviation (scalars, so no test information
leaks in).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nnbench.data.idx import read_idx
from nnbench.data.source import TensorDataSource

__all__ = ["MNIST_FILES", "NUM_CLASSES", "load_idx_pair", "mnist", "fashion_mnist"]

NUM_CLASSES = 10
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} (or {name}.gz) not found in root={str(root)!r}; MNIST-format data "
                            f"needs the four IDX files {sorted(sum(MNIST_FILES.values(), ()))}")


def load_idx_pair(root: str | Path, images_name: str, labels_name: str,
                  num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one images/labels IDX pair from ``root``.

    Returns:
        images uint8 ``(N, H, W)`` and labels int64 ``(N,)`` in ``[0, num_classes)``.
    Raises:
        FileNotFoundError: a file is missing. ValueError: a file is corrupt, has the wrong type or
        rank, the counts differ, or a label is out of range (the message names the file).
    """
    root = Path(root)
    img_path, lab_path = _find(root, images_name), _find(root, labels_name)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{img_path}: expected uint8 images of rank 3 (N, H, W), "
                         f"got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{lab_path}: expected uint8 labels of rank 1, got {labels.dtype} "
                         f"of shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{lab_path}: {labels.shape[0]} labels but {img_path.name} holds "
                         f"{images.shape[0]} images")
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"{lab_path}: label {int(labels.max())} out of range [0, {num_classes})")
    return images, labels.astype(np.int64)


def _mnist_format(name: str, root: str | Path | None, device, num_validation: int,
                  standardize: bool) -> TensorDataSource:
    if root is None:
        raise ValueError(f"data set {name!r} reads local IDX files: pass root=<folder holding "
                         f"{MNIST_FILES['train'][0]}[.gz] and the other three files>")
    x_train, y_train = load_idx_pair(root, *MNIST_FILES["train"])
    x_test, y_test = load_idx_pair(root, *MNIST_FILES["test"])
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"{name}: test images are {x_test.shape[1:]} but training images are "
                         f"{x_train.shape[1:]}")
    n = x_train.shape[0]
    if isinstance(num_validation, bool) or not isinstance(num_validation, (int, np.integer)) \
            or not 0 < num_validation < n:
        raise ValueError(f"num_validation must be an integer in [1, {n}) for the {n} training "
                         f"examples in {root}, got {num_validation!r}")

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)  # (N, 1, H, W)

    xs, ys = to_tensor(x_train), torch.from_numpy(y_train)
    xt, yt = to_tensor(x_test), torch.from_numpy(y_test)
    cut = n - num_validation  # Shallue et al.: the LAST num_validation training examples validate
    splits = {"train": (xs[:cut], ys[:cut]), "validation": (xs[cut:], ys[cut:]), "test": (xt, yt)}
    if standardize:
        mean, std = splits["train"][0].mean(), splits["train"][0].std()
        splits = {k: ((x - mean) / std, y) for k, (x, y) in splits.items()}
    return TensorDataSource(name=name, task="classification", splits=splits, num_outputs=NUM_CLASSES,
                            device=device)


def mnist(*, root: str | Path | None = None, device="cpu", num_validation: int = 5000,
          standardize: bool = False) -> TensorDataSource:
    """MNIST (LeCun et al.) from the IDX files in ``root``: 55,000 train / 5,000 validation / 10,000 test."""
    return _mnist_format("mnist", root, device, num_validation, standardize)


def fashion_mnist(*, root: str | Path | None = None, device="cpu", num_validation: int = 5000,
                  standardize: bool = False) -> TensorDataSource:
    """Fashion-MNIST (Xiao et al. 2017), same format, file names and splits as MNIST."""
    return _mnist_format("fashion_mnist", root, device, num_validation, standardize)
