"""CIFAR-10 from the local "python version" batches (nothing is downloaded).

Expected layout: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch}`` (``root`` may also be the
``cifar-10-batches-py`` folder itself). Each batch is a pickled dict with ``b"data"``: uint8 (N, 3072),
rows holding the red, green and blue 32x32 planes in row-major order, and ``b"labels"``: N ints in
[0, 10).

Splits (Shallue et al. 2018, appendix A.1; Zhang et al. 2019, Table 1 "CIFAR10 45,000"): of the 50,000
training images the first ``50,000 - num_validation`` (45,000) are ``"train"`` and the last
``num_validation`` (5,000) are ``"validation"``; ``test_batch`` is ``"test"``. Pixels are scaled to
[0, 1] and, by default, standardized per channel with the training split's mean and standard
deviation. Training batches get flip + 4-pixel-pad crop augmentation on the device
(``nnbench.data.augment``; zero padding is applied after standardization, i.e. pads with the mean
colour); evaluation splits are never augmented.

Pickles can execute code when loaded, so the batches are read with an unpickler that only admits the
numpy array reconstruction a CIFAR batch needs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from nnbench.data.augment import flip_and_crop
from nnbench.data.source import TensorDataSource

__all__ = ["CIFAR10_TRAIN_FILES", "CIFAR10_TEST_FILE", "cifar10", "load_cifar_batch"]

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
_NUM_CLASSES = 10
_ROW = 3 * 32 * 32

# The only globals a pickled numpy array needs (numpy < 2 wrote numpy.core, numpy >= 2 numpy._core).
_ALLOWED_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy")
    for name in ("_reconstruct", "ndarray", "dtype", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
     ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def load_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as images uint8 (N, 3, 32, 32) and labels int64 (N,).

    Raises:
        FileNotFoundError: no such file. ValueError (naming the file): not a readable pickle, not a
        dict with ``b"data"`` and ``b"labels"``, wrong dtype or shape, count mismatch, label out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch not found: {path}")
    try:
        with path.open("rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as err:  # truncation, garbage, forbidden globals: all mean "corrupt file"
        raise ValueError(f"{path}: not a readable CIFAR-10 pickle batch ({type(err).__name__}: {err})") \
            from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = list(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{path}: expected a dict with keys b'data' and b'labels', got {keys}")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _ROW:
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, {_ROW}), got "
                         f"{getattr(data, 'dtype', type(data).__name__)} of shape {shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: b'labels' must be {data.shape[0]} integers (one per image), got "
                         f"{labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise ValueError(f"{path}: labels out of range [0, {_NUM_CLASSES}): "
                         f"min {labels.min()}, max {labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _batch_dir(root: Path) -> Path:
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / CIFAR10_TRAIN_FILES[0]).is_file():
            return folder
    raise FileNotFoundError(f"{CIFAR10_TRAIN_FILES[0]} not found in root={str(root)!r} or in its "
                            f"cifar-10-batches-py/ folder; CIFAR-10 needs {list(CIFAR10_TRAIN_FILES)} "
                            f"and {CIFAR10_TEST_FILE!r} (the python version)")


def cifar10(*, root: str | Path | None = None, device="cpu", num_validation: int = 5000,
            standardize: bool = True, augment: bool = True) -> TensorDataSource:
    """CIFAR-10 (Krizhevsky 2009): 45,000 train / 5,000 validation / 10,000 test, (N, 3, 32, 32) float32.

    Args:
        root: folder holding ``cifar-10-batches-py/`` (or that folder itself).
        device: where the tensors live and batches are made.
        num_validation: last training images held out for validation (5,000 in the paper).
        standardize: per-channel standardization with training-split statistics.
        augment: random flip + 4-pixel-pad random crop on training batches (Zhang et al. appendix E.1).
    """
    if root is None:
        raise ValueError("data set 'cifar10' reads local files: pass root=<folder holding "
                         "cifar-10-batches-py/>")
    folder = _batch_dir(Path(root))
    parts = [load_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    x_test, y_test = load_cifar_batch(folder / CIFAR10_TEST_FILE)
    x_all = np.concatenate([p[0] for p in parts])
    y_all = np.concatenate([p[1] for p in parts])
    n = x_all.shape[0]
    if isinstance(num_validation, bool) or not isinstance(num_validation, (int, np.integer)) \
            or not 0 < num_validation < n:
        raise ValueError(f"num_validation must be an integer in [1, {n}) for the {n} training images "
                         f"in {folder}, got {num_validation!r}")
    cut = n - num_validation

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(torch.float32).div_(255.0)

    xs, xt = to_tensor(x_all), to_tensor(x_test)
    splits = {"train": (xs[:cut], torch.from_numpy(y_all[:cut])),
              "validation": (xs[cut:], torch.from_numpy(y_all[cut:])),
              "test": (xt, torch.from_numpy(y_test))}
    if standardize:
        train_x = splits["train"][0]
        mean = train_x.mean(dim=(0, 2, 3), keepdim=True)[0]  # (3, 1, 1)
        std = train_x.std(dim=(0, 2, 3), keepdim=True)[0].clamp_min(1e-8)
        splits = {k: ((x - mean) / std, y) for k, (x, y) in splits.items()}
    return TensorDataSource(name="cifar10", task="classification", splits=splits,
                            num_outputs=_NUM_CLASSES, augment=flip_and_crop if augment else None,
                            device=device)
