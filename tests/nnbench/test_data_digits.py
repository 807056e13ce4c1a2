"""nnbench.data.digits: scikit-learn's real 8x8 digits, a fixed stratified split, standardised."""

import sys

import numpy as np
import pytest
import torch

from nnbench.cli import main
from nnbench.data import build_dataset
from nnbench.data.digits import digits_split, load_digits_arrays


def test_split_sizes_strata_and_determinism():
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 8, 8) and images.min() == 0 and images.max() == 16
    train, val = digits_split(labels, 400, 0)
    assert (train.size, val.size) == (1397, 400)
    assert np.intersect1d(train, val).size == 0 and np.union1d(train, val).size == 1797
    assert np.bincount(labels[val], minlength=10).tolist() == [40] * 10
    again_train, again_val = digits_split(labels, 400, 0)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, digits_split(labels, 400, 1)[1])


def test_data_source_is_standardised_on_train():
    src = build_dataset("digits")
    x, y = src.eval_data("train")
    xv, yv = src.eval_data("validation")
    assert src.num_train == 1397 and x.shape == (1397, 1, 8, 8) and xv.shape == (400, 1, 8, 8)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and src.num_outputs == 10
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5) and float(x.std()) == pytest.approx(1.0, abs=1e-4)
    # the same affine map on both splits: raw pixel 0 is one value everywhere
    assert float(xv.min()) == pytest.approx(float(x.min()))
    images, labels = load_digits_arrays()
    _, val = digits_split(labels, 400, 0)
    assert torch.equal(yv, torch.from_numpy(labels[val]))


@pytest.mark.parametrize("n", [0, 5, 399, 1800])
def test_bad_num_validation(n):
    with pytest.raises(ValueError, match="num_validation"):
        build_dataset("digits", num_validation=n)


def test_missing_scikit_learn_is_a_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"needs scikit-learn.*pip install"):
        build_dataset("digits")
    assert main(["sweep", "--workload", "digits_mlp", "--batch-sizes", "16", "--trials", "1", "--quiet",
                 "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "needs scikit-learn" in err and "Traceback" not in err
