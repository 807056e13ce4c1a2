"""nnbench.data sources: epoch streams, batched augmentation, online teacher, synthetic images, Markov and
text language data, and the registry's errors."""

import math

import numpy as np
import pytest
import torch

from nnbench.data import (
    DATASETS,
    EMBEDDED_DATASETS,
    TensorDataSource,
    build_dataset,
    dataset_kwargs,
    flip_and_crop,
    random_crop,
    random_flip,
)


def indexed_source(n=22, augment=None):
    # x[i] = i so a batch tells which examples it holds
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return TensorDataSource(name="idx", task="regression", splits={"train": (x, x.clone()),
                            "validation": (x[:3], x[:3])}, num_outputs=1, augment=augment)


# ---------------------------------------------------------------- finite streams
def test_stream_epochs_cover_every_example_once_and_drop_the_tail():
    src = indexed_source(n=22)
    stream = src.train_stream(batch_size=5, seed=0)
    for _ in range(3):  # 22 // 5 = 4 full batches per epoch; the 2 left over are dropped
        epoch = torch.cat([next(stream)[0][:, 0] for _ in range(4)])
        assert epoch.shape == (20,) and epoch.unique().numel() == 20
    # with no tail, an epoch is a permutation of all examples
    stream = indexed_source(n=20).train_stream(batch_size=4, seed=1)
    epoch = torch.cat([next(stream)[0][:, 0] for _ in range(5)])
    assert torch.equal(epoch.sort().values, torch.arange(20.0))


def test_stream_is_reproducible_per_seed_and_reshuffles_each_epoch():
    src = indexed_source(n=20)

    def first(seed, k=10):
        stream = src.train_stream(batch_size=10, seed=seed)
        return torch.cat([next(stream)[0] for _ in range(k)])

    assert torch.equal(first(7), first(7))
    assert not torch.equal(first(7), first(8))
    epochs = first(7).view(-1, 20)
    assert not all(torch.equal(epochs[0], e) for e in epochs[1:])  # order changes between epochs


def test_stream_argument_errors():
    src = indexed_source(n=10)
    for bad in (0, -3, 2.0, True, None):
        with pytest.raises(ValueError, match="batch_size"):
            src.train_stream(batch_size=bad, seed=0)
    with pytest.raises(ValueError, match="batch_size=11"):
        src.train_stream(batch_size=11, seed=0)
    for bad in (-1, 1.5, "0"):
        with pytest.raises(ValueError, match="seed"):
            src.train_stream(batch_size=2, seed=bad)
    with pytest.raises(ValueError, match="split"):
        src.eval_data("test")
    assert src.to("cpu") is src
    with pytest.raises(ValueError, match="device"):
        src.to("not-a-device")


def test_stream_applies_augmentation_to_training_batches_only():
    calls = []

    def augment(x, gen):
        calls.append(gen)
        return x + 100.0

    src = indexed_source(n=10, augment=augment)
    x, y = next(src.train_stream(batch_size=5, seed=0))
    assert torch.equal(x, y + 100.0) and isinstance(calls[0], torch.Generator)
    assert torch.equal(src.eval_data()[0], src.eval_data()[1])


# ---------------------------------------------------------------- many members' streams at once
def _assert_stacked_streams_match(src, batch_size, seeds, steps=4, keep=None):
    """``train_streams`` row k is, bit for bit, stream k's batch (also after ``keep`` drops members)."""
    together = src.train_streams(batch_size, seeds)
    apart = [src.train_stream(batch_size, seed) for seed in seeds]
    for step in range(steps):
        if keep is not None and step == steps // 2:
            together.keep(keep)
            apart = [apart[k] for k in keep]
        x, y = next(together)
        assert len(together) == x.shape[0] == len(apart)
        for k, stream in enumerate(apart):
            xk, yk = next(stream)
            assert torch.equal(x[k], xk) and torch.equal(y[k], yk), (step, k)


@pytest.mark.parametrize("name, kwargs", [
    ("teacher", {}), ("teacher", {"label_noise": 0.3}), ("teacher_regression", {"output_dim": 3}),
    ("synthetic_images", {"num_train": 40, "num_validation": 10, "size": 8}),
    ("markov_lm", {"vocab_size": 8, "seq_len": 4, "num_train": None, "num_validation": 5}),
])
def test_stacked_streams_are_the_members_own_batches_bitwise(name, kwargs):
    src = build_dataset(name, **kwargs)
    # 16 examples per step: the synthetic set's epochs (40 // 16 = 2 batches) turn over within the steps
    _assert_stacked_streams_match(src, 16, [3, 1, 4, 1_000_003, 5], steps=6, keep=[4, 1, 2])


def test_stacked_streams_augment_each_member_with_its_own_generator():
    src = indexed_source(n=12, augment=lambda x, gen: x + torch.rand(x.shape, generator=gen))
    _assert_stacked_streams_match(src, 5, [0, 7, 8], steps=6, keep=[2, 0])


def test_teacher_one_product_for_all_members_is_kept_only_where_it_is_exact():
    src = build_dataset("teacher", input_dim=6, hidden=8, num_classes=4)
    _assert_stacked_streams_match(src, 32, [0, 1, 2])
    assert src._flat_exact == {(3, 32, "cpu", torch.get_num_threads()): True}  # measured once, here equal
    exact_teacher = src.teacher
    # a BLAS whose longer products differ (here grossly: other labels): the flat product must not be used
    src.teacher = lambda x: exact_teacher(x) * (-1.0 if x.shape[0] > 32 else 1.0)
    src._flat_exact.clear()
    _assert_stacked_streams_match(src, 32, [0, 1, 2])
    assert list(src._flat_exact.values()) == [False]


# ---------------------------------------------------------------- augmentation
def _reference_views(img):
    """All 2 x 9 x 9 flip/crop results of one image (C, H, W), by explicit slicing."""
    padded = torch.nn.functional.pad(img, (4, 4, 4, 4))
    flipped = torch.nn.functional.pad(img.flip(2), (4, 4, 4, 4))
    h, w = img.shape[1:]
    return [(f, dy, dx, src[:, dy:dy + h, dx:dx + w]) for f, src in ((0, padded), (1, flipped))
            for dy in range(9) for dx in range(9)]


def test_flip_and_crop_outputs_are_flips_and_shifts_of_their_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 10, 12) + 1.0  # strictly positive, so padding shows as zeros
    out = flip_and_crop(x, gen)
    assert out.shape == x.shape
    seen = set()
    for img, res in zip(x, out, strict=True):
        matches = [(f, dy, dx) for f, dy, dx, view in _reference_views(img) if torch.equal(view, res)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 12  # offsets and flips vary per image
    assert {f for f, _, _ in seen} == {0, 1}
    # reproducible from the generator state
    again = flip_and_crop(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_flip_rate_and_crop_offsets_are_uniform():
    gen = torch.Generator().manual_seed(1)
    x = torch.arange(8.0).repeat(4000, 1, 1, 1)  # (4000, 1, 1, 8) rows 0..7
    flipped = (random_flip(x, gen)[:, 0, 0, 0] == 7).float().mean().item()
    assert abs(flipped - 0.5) < 0.03  # 4000 draws: sd 0.008
    y = torch.ones(9000, 1, 1, 1)
    crops = random_crop(y, gen, padding=4)  # a 1x1 image lands inside the 9x9 window w.p. 1/9
    assert abs(crops.mean().item() - 1 / 81) < 0.004  # both offsets must be 4: prob 1/81


# ---------------------------------------------------------------- online teacher
def test_teacher_batches_are_fresh_and_reproducible():
    src = build_dataset("teacher", input_dim=6, hidden=8, num_classes=4)
    assert src.num_train is None and src.input_shape == (6,) and src.num_outputs == 4
    stream = src.train_stream(batch_size=16, seed=0)
    (x1, y1), (x2, _) = next(stream), next(stream)
    assert x1.shape == (16, 6) and y1.dtype == torch.int64 and not torch.equal(x1, x2)
    x1b, _ = next(build_dataset("teacher", input_dim=6, hidden=8, num_classes=4).train_stream(16, 0))
    assert torch.equal(x1, x1b)
    assert not torch.equal(x1, next(src.train_stream(16, 1))[0])
    xv, yv = src.eval_data()
    assert xv.shape == (10_000, 6) and torch.equal(xv, src.eval_data()[0])
    assert not torch.equal(xv[:16], x1)  # held-out set is not the training stream of seed 0


def test_teacher_labels_are_the_teachers_argmax_and_classes_are_balanced():
    src = build_dataset("teacher", num_classes=5, seed=3)
    x, y = src.eval_data()
    # independent float64 recomputation of the teacher from its weights
    w1, w2, b = (t.double().numpy() for t in (src._w1, src._w2, src._b))
    logits = np.tanh(x.double().numpy() @ w1.T / math.sqrt(32)) @ w2.T / math.sqrt(64) + b
    assert (logits.argmax(1) == y.numpy()).mean() > 0.999  # float32 ties aside
    counts = np.bincount(y.numpy(), minlength=5)
    assert counts.min() > 10_000 / (3 * 5)
    other = build_dataset("teacher", num_classes=5, seed=4).eval_data()
    assert not torch.equal(other[1], y)


def test_teacher_label_noise_rate():
    p, k = 0.3, 4
    clean = build_dataset("teacher", num_classes=k, num_eval=20_000)
    noisy = build_dataset("teacher", num_classes=k, num_eval=20_000, label_noise=p)
    x, y = noisy.eval_data()
    wrong = (clean.teacher(x).argmax(1) != y).float().mean().item()
    assert abs(wrong - p * (1 - 1 / k)) < 0.015  # sd ~0.003
    with pytest.raises(ValueError, match="label_noise"):
        build_dataset("teacher", label_noise=1.5)


def test_teacher_regression_noise_and_shapes():
    src = build_dataset("teacher_regression", output_dim=3, noise_std=0.5, num_eval=20_000)
    assert src.task == "regression" and src.num_outputs == 3
    x, y = src.eval_data()
    assert y.shape == (20_000, 3) and y.dtype == torch.float32
    residual = y - src.teacher(x)
    assert abs(residual.std().item() - 0.5) < 0.01 and abs(residual.mean().item()) < 0.01
    xb, yb = next(src.train_stream(8, 0))
    assert yb.shape == (8, 3)
    with pytest.raises(ValueError, match="noise_std"):
        build_dataset("teacher_regression", noise_std=-1.0)


# ---------------------------------------------------------------- synthetic images
def test_synthetic_images_are_balanced_reproducible_and_learnable():
    src = build_dataset("synthetic_images", num_train=600, num_validation=200, num_classes=4, channels=3,
                        size=8)
    assert (src.num_train, src.input_shape, src.num_outputs) == (600, (3, 8, 8), 4)
    x, y = src.eval_data("train")
    assert np.bincount(y.numpy()).tolist() == [150] * 4
    assert np.bincount(src.eval_data()[1].numpy()).tolist() == [50] * 4
    again = build_dataset("synthetic_images", num_train=600, num_validation=200, num_classes=4,
                          channels=3, size=8)
    assert torch.equal(x, again.eval_data("train")[0])
    assert not torch.equal(x, build_dataset("synthetic_images", num_train=600, num_validation=200,
                                            num_classes=4, channels=3, size=8,
                                            seed=1).eval_data("train")[0])
    # a nearest-class-mean classifier fit on train beats chance clearly on validation
    means = torch.stack([x[y == c].mean(0) for c in range(4)]).flatten(1)
    xv, yv = src.eval_data()
    pred = (xv.flatten(1) @ means.T).argmax(1)
    assert (pred == yv).float().mean().item() > 0.6  # chance is 0.25


# ---------------------------------------------------------------- Markov language
def test_markov_chain_stationary_and_entropy_rate_independently():
    src = build_dataset("markov_lm", vocab_size=12, seq_len=10, num_train=4000, num_validation=2000)
    chain = src.chain
    p = chain.transition
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    pi = np.full(12, 1 / 12)
    for _ in range(2000):  # power iteration, independent of the eigen-solver used in the library
        pi = pi @ p
    np.testing.assert_allclose(chain.stationary, pi, atol=1e-10)
    h = -sum(pi[i] * p[i, j] * math.log(p[i, j]) for i in range(12) for j in range(12))
    assert chain.entropy_rate == pytest.approx(h, rel=1e-10)


def test_markov_sequences_follow_the_chain():
    src = build_dataset("markov_lm", vocab_size=8, seq_len=16, num_train=3000, num_validation=2000, seed=2)
    x, y = src.eval_data("train")
    assert x.shape == (3000, 16) and x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
    counts = np.zeros((8, 8))
    np.add.at(counts, (x.numpy().ravel(), y.numpy().ravel()), 1)
    empirical = counts / counts.sum(1, keepdims=True)
    assert np.abs(empirical - src.chain.transition).max() < 0.03  # >= 3000 transitions per row
    first = np.bincount(x[:, 0].numpy(), minlength=8) / 3000
    assert np.abs(first - src.chain.stationary).max() < 0.04
    # the true model's cross entropy on held-out text matches the entropy rate
    xv, yv = src.eval_data()
    ce = -np.log(src.chain.transition[xv.numpy(), yv.numpy()]).mean()
    assert ce == pytest.approx(src.chain.entropy_rate, rel=0.02)


def test_markov_online_batches_are_fresh():
    src = build_dataset("markov_lm", vocab_size=16, seq_len=8, num_train=None, num_validation=50)
    assert src.num_train is None and src.num_outputs == 16 and src.input_shape == (8,)
    stream = src.train_stream(32, seed=0)
    (x1, y1), (x2, _) = next(stream), next(stream)
    assert x1.shape == (32, 8) and torch.equal(x1[:, 1:], y1[:, :-1]) and not torch.equal(x1, x2)
    assert src.eval_data()[0].shape == (50, 8)
    with pytest.raises(ValueError, match="concentration"):
        build_dataset("markov_lm", concentration=0.0)


# ---------------------------------------------------------------- local text
def test_text_lm_chunks_bytes_and_holds_out_the_tail(tmp_path):
    text = bytes(range(256)) * 4  # 1024 bytes
    path = tmp_path / "corpus.txt"
    path.write_bytes(text)
    src = build_dataset("text_lm", path=str(path), seq_len=10, validation_fraction=0.2)
    num_seq = (1024 - 1) // 10  # 102 sequences of 11 bytes, stride 10
    x, y = src.eval_data("train")
    xv, yv = src.eval_data()
    assert x.shape[0] + xv.shape[0] == num_seq and xv.shape[0] == math.ceil(0.2 * num_seq)
    assert src.num_outputs == 256 and src.input_shape == (10,)
    np.testing.assert_array_equal(x[3].numpy(), np.frombuffer(text[30:40], np.uint8))
    np.testing.assert_array_equal(y[3].numpy(), np.frombuffer(text[31:41], np.uint8))
    last = num_seq - 1
    np.testing.assert_array_equal(yv[-1].numpy(), np.frombuffer(text[10 * last + 1:10 * last + 11], np.uint8))
    # root can name the file too
    assert build_dataset("text_lm", root=str(path), seq_len=10).num_train > 0


def test_text_lm_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_dataset("text_lm", path=str(tmp_path / "missing.txt"))
    short = tmp_path / "short.txt"
    short.write_bytes(b"hello")
    with pytest.raises(ValueError, match="short.txt"):
        build_dataset("text_lm", path=str(short), seq_len=8)
    with pytest.raises(ValueError, match="path"):
        build_dataset("text_lm")
    with pytest.raises(ValueError, match="validation_fraction"):
        build_dataset("text_lm", path=str(short), seq_len=1, validation_fraction=1.0)


# ---------------------------------------------------------------- registry
def test_registry_errors_and_options():
    with pytest.raises(ValueError, match="known: .*teacher"):
        build_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown option.*'colour'.*accepts"):
        build_dataset("teacher", colour="red")
    with pytest.raises(ValueError, match="device"):
        build_dataset("teacher", device="tpu:7")
    assert "num_validation" in dataset_kwargs("mnist") and "root" not in dataset_kwargs("mnist")
    assert set(EMBEDDED_DATASETS) <= set(DATASETS)


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_embedded_defaults_build_without_files(name):
    src = build_dataset(name)
    x, y = next(src.train_stream(batch_size=4, seed=0))
    xv, yv = src.eval_data()
    assert x.shape == (4, *src.input_shape) and xv.shape[1:] == x.shape[1:]
    assert x.device == src.device and y.shape[0] == 4 and yv.shape[0] == xv.shape[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_batches_are_made_on_the_gpu(name):
    src = build_dataset(name, device="cuda")
    x, y = next(src.train_stream(batch_size=8, seed=0))
    assert x.is_cuda and y.is_cuda and src.eval_data()[0].is_cuda
    # the held-out set is drawn on the CPU: the same on every device
    assert torch.equal(src.eval_data()[1].cpu(), build_dataset(name).eval_data()[1])
    assert not src.to("cpu").eval_data()[0].is_cuda
