"""nnbench.data real-file loaders: IDX (MNIST / Fashion-MNIST) and CIFAR-10 pickles, written here.

Every file is written by an independent writer in this module (struct / pickle), then read back;
corrupt variants (truncated, wrong magic, bad pickle, mismatched counts) must raise a ValueError or
FileNotFoundError naming the file.
"""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from nnbench.data import build_dataset, cifar10, load_cifar_batch, mnist, read_idx

# ---------------------------------------------------------------- IDX writer (independent of read_idx)
_CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
          np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, _CODES[arr.dtype], arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, payload: bytes, gz: bool = False):
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_mnist(root, n_train=30, n_test=7, size=8, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write(root / name, idx_bytes(arr), gz=gz)
    return arrays


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, dtype, gz):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    path = write(tmp_path / "a-idx3", idx_bytes(arr), gz=gz)
    out = read_idx(path)
    assert out.shape == arr.shape and out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_corrupt_files(tmp_path, gz):
    good = idx_bytes(np.zeros((4, 3, 3), np.uint8))
    cases = {
        "truncated": good[:-5],
        "trailing": good + b"\x00",
        "magic": b"\x01" + good[1:],
        "code": good[:2] + b"\x07" + good[3:],
        "header": good[:6],
        "tiny": good[:2],
    }
    for label, payload in cases.items():
        path = write(tmp_path / f"{label}-idx", payload, gz=gz)
        with pytest.raises(ValueError, match=path.name):
            read_idx(path)


def test_read_idx_truncated_gzip_and_missing_file(tmp_path):
    raw = gzip.compress(idx_bytes(np.arange(600, dtype=np.uint8).reshape(6, 10, 10)))
    path = tmp_path / "cut-idx.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut-idx.gz"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_splits_values_and_order(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    src = mnist(root=tmp_path, num_validation=5)
    assert (src.name, src.task, src.num_outputs, src.num_train) == ("mnist", "classification", 10, 25)
    assert src.input_shape == (1, 8, 8) and src.splits == ("train", "validation", "test")
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    x, y = src.eval_data("train")
    np.testing.assert_allclose(x.numpy()[:, 0], images[:25] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), labels[:25])
    x, y = src.eval_data()  # validation = the LAST num_validation training examples
    np.testing.assert_allclose(x.numpy()[:, 0], images[25:] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), labels[25:])
    x, y = src.eval_data("test")
    assert x.shape == (7, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(y.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_mnist_defaults_are_the_paper_split(tmp_path):
    write_mnist(tmp_path, n_train=5001, n_test=2, size=2)
    src = build_dataset("fashion_mnist", root=tmp_path)
    assert src.name == "fashion_mnist"
    assert src.num_train == 1 and src.eval_data()[0].shape[0] == 5000  # 60,000 -> 55,000 + 5,000


def test_mnist_standardize_uses_training_statistics(tmp_path):
    write_mnist(tmp_path)
    x = mnist(root=tmp_path, num_validation=5, standardize=True).eval_data("train")[0]
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1.0) < 1e-4


def test_mnist_errors_name_the_file(tmp_path):
    arrays = write_mnist(tmp_path)
    # label count mismatch
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(arrays["train-labels-idx1-ubyte"][:-1]))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        mnist(root=tmp_path, num_validation=5)
    # label out of range
    bad = arrays["train-labels-idx1-ubyte"].copy()
    bad[3] = 10
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(bad))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*out of range"):
        mnist(root=tmp_path, num_validation=5)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(arrays["train-labels-idx1-ubyte"]))
    # images of the wrong rank
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((7, 64), np.uint8)))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        mnist(root=tmp_path, num_validation=5)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        mnist(root=tmp_path, num_validation=5)


def test_mnist_argument_errors(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match="root"):
        mnist()
    for bad in (0, 30, -1, 2.5):
        with pytest.raises(ValueError, match="num_validation"):
            mnist(root=tmp_path, num_validation=bad)


# ---------------------------------------------------------------- CIFAR-10 writer
def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"testing", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"f%d.png" % i for i in range(n)]}


def write_cifar(root, per_batch=4, n_test=3, protocol=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(n_test if name == "test_batch" else per_batch, seed=i)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=protocol))
    return folder, batches


def test_cifar_layout_splits_and_root_forms(tmp_path):
    folder, batches = write_cifar(tmp_path)
    src = cifar10(root=tmp_path, num_validation=4, standardize=False, augment=False)
    assert (src.num_train, src.input_shape, src.num_outputs) == (16, (3, 32, 32), 10)
    data = np.concatenate([batches[f"data_batch_{k}"][b"data"] for k in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{k}"][b"labels"] for k in range(1, 6)])
    x, y = src.eval_data("train")
    # pixel (c, i, j) of image n is data[n, 1024 c + 32 i + j] (red, green, blue planes, row-major)
    for n, c, i, j in [(0, 0, 0, 0), (3, 1, 5, 7), (15, 2, 31, 30)]:
        assert x[n, c, i, j].item() == pytest.approx(data[n, 1024 * c + 32 * i + j] / 255.0)
    np.testing.assert_array_equal(y.numpy(), labels[:16])
    xv, yv = src.eval_data("validation")
    np.testing.assert_allclose(xv.reshape(4, -1).numpy(), data[16:] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(yv.numpy(), labels[16:])
    assert src.eval_data("test")[0].shape == (3, 3, 32, 32)
    # root may also be the batches folder itself
    assert cifar10(root=folder, num_validation=4).num_train == 16


def test_cifar_standardizes_per_channel_with_training_statistics(tmp_path):
    write_cifar(tmp_path)
    x = cifar10(root=tmp_path, num_validation=4).eval_data("train")[0]
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-4)


def test_cifar_reads_numpy1_pickles(tmp_path):
    # Real CIFAR files were pickled by numpy < 2 and name numpy.core.multiarray._reconstruct.
    batch = cifar_batch(2, seed=9)
    payload = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in payload
    (tmp_path / "b").write_bytes(payload)
    images, labels = load_cifar_batch(tmp_path / "b")
    np.testing.assert_array_equal(images.reshape(2, -1), batch[b"data"])
    np.testing.assert_array_equal(labels, batch[b"labels"])


class _Evil:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def test_cifar_corrupt_batches_raise_naming_the_file(tmp_path):
    good = pickle.dumps(cifar_batch(4, 0), protocol=2)
    wrong_shape = cifar_batch(4, 0)
    wrong_shape[b"data"] = wrong_shape[b"data"][:, :3000]
    wrong_count = cifar_batch(4, 0)
    wrong_count[b"labels"] = wrong_count[b"labels"][:3]
    wrong_label = cifar_batch(4, 0)
    wrong_label[b"labels"][0] = 10
    no_labels = {b"data": cifar_batch(4, 0)[b"data"]}
    cases = {
        "truncated": good[: len(good) // 2],
        "garbage": b"this is not a pickle at all",
        "empty": b"",
        "shape": pickle.dumps(wrong_shape),
        "count": pickle.dumps(wrong_count),
        "label": pickle.dumps(wrong_label),
        "keys": pickle.dumps(no_labels),
        "notdict": pickle.dumps([1, 2, 3]),
        "evil": pickle.dumps({b"data": _Evil(), b"labels": []}),
    }
    for label, payload in cases.items():
        path = tmp_path / f"batch_{label}"
        path.write_bytes(payload)
        with pytest.raises(ValueError, match=path.name):
            load_cifar_batch(path)


def test_cifar_missing_files(tmp_path):
    folder, _ = write_cifar(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        cifar10(root=tmp_path, num_validation=4)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        cifar10(root=tmp_path / "empty")
    with pytest.raises(ValueError, match="root"):
        cifar10()
    # a corrupt batch among good ones: the error names it
    (tmp_path / "other").mkdir()
    write_cifar(tmp_path / "other")
    (tmp_path / "other" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02junk")
    with pytest.raises(ValueError, match="data_batch_3"):
        cifar10(root=tmp_path / "other", num_validation=4)


def test_cifar_training_stream_augments_but_keeps_labels(tmp_path):
    # Images whose every pixel encodes the label (label + 1, never 0): after flip + zero-pad crop,
    # every non-zero pixel must still equal label + 1 of the batch's label.
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, 8)
        data = np.repeat((labels + 1).astype(np.uint8)[:, None], 3072, axis=1)
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels.tolist()}))
    src = cifar10(root=tmp_path, num_validation=8, standardize=False)
    stream = src.train_stream(batch_size=16, seed=3)
    saw_padding = False
    for _ in range(4):
        x, y = next(stream)
        assert x.shape == (16, 3, 32, 32) and y.shape == (16,)
        code = (x * 255).round()
        nonzero = code != 0
        expected = (y + 1).to(code.dtype)[:, None, None, None].expand_as(code)
        assert torch.equal(code[nonzero], expected[nonzero])
        saw_padding |= bool((~nonzero).any())
    assert saw_padding  # crops shifted some images into the zero padding
    # evaluation data is never augmented
    xv, yv = src.eval_data()
    assert torch.equal((xv * 255).round(), (yv + 1).float()[:, None, None, None].expand_as(xv))
