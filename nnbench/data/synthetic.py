"""Embedded synthetic data sets that need no download: an online teacher task and small images.

``teacher`` / ``teacher_regression``: a fixed random two-layer tanh network (the teacher) labels fresh
standard-Gaussian inputs at every training step. This is the online setting the noisy quadratic model
assumes (Zhang et al. 2019, section 3: every minibatch is a fresh sample, so there is no overfitting and
the gradient noise covariance is that of one example divided by the batch size).

``synthetic_images``: a small finite image classification set (default 4,000 train / 1,000 validation
images of 1x16x16): each class has a smooth random prototype pattern; an image is its class prototype,
circularly shifted by up to ``max_shift`` pixels, scaled by a random contrast in [0.5, 1.5], plus
Gaussian pixel noise. Shifts make a convolutional network the natural model; noise makes it non-trivial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nnbench.data.source import (
    OnlineDataSource,
    TensorDataSource,
    check_nonneg_float,
    check_positive_int,
    check_seed,
    derive_seed,
)

__all__ = ["TeacherSource", "teacher", "teacher_regression", "synthetic_images"]

# Inputs used once, at construction, to centre the teacher's logits so that classes are roughly
# balanced (an uncentred random teacher can give one class most of the mass).
_CENTERING_SAMPLES = 8192


class TeacherSource(OnlineDataSource):
    """Fresh Gaussian inputs labelled by a fixed random teacher network.

    Teacher: ``f(x) = W2 tanh(W1 x / sqrt(D)) / sqrt(H) + b`` with ``W1`` (H, D) and ``W2`` (K, H)
    standard normal, drawn from ``seed`` (the same teacher on every device). Inputs ``x ~ N(0, I_D)``.

    - classification: ``b`` centres each logit over a fixed reference sample; the label is
      ``argmax f(x)``, replaced by a uniformly random class with probability ``label_noise``.
    - regression: ``b = 0``; the target is ``f(x) + noise_std * N(0, I_K)``.
    """

    def __init__(self, *, task: str, input_dim: int, hidden: int, num_outputs: int, label_noise: float,
                 noise_std: float, seed: int, num_eval: int, device) -> None:
        seed = check_seed(seed)
        super().__init__(num_eval=num_eval, eval_seed=derive_seed(seed, 2), device=device)
        self.name = "teacher" if task == "classification" else "teacher_regression"
        self.task = task
        self.input_dim = check_positive_int(input_dim, "input_dim")
        self.hidden = check_positive_int(hidden, "hidden")
        self.num_outputs = check_positive_int(num_outputs, "num_outputs",
                                              2 if task == "classification" else 1)
        self.label_noise = check_nonneg_float(label_noise, "label_noise", 1.0)
        self.noise_std = check_nonneg_float(noise_std, "noise_std")
        self.input_shape = (self.input_dim,)
        gen = torch.Generator().manual_seed(derive_seed(seed, 0))
        self._w1 = torch.randn(self.hidden, self.input_dim, generator=gen)
        self._w2 = torch.randn(self.num_outputs, self.hidden, generator=gen)
        self._b = torch.zeros(self.num_outputs)
        if task == "classification":
            ref = torch.randn(_CENTERING_SAMPLES, self.input_dim, generator=gen)
            self._b = -self.teacher(ref).mean(dim=0)
        self._move(self.device)
        # (members, rows, device, torch threads) -> whether one product over all members' rows gives
        # each member's teacher outputs bit for bit (checked once per key: _teacher_members)
        self._flat_exact: dict[tuple, bool] = {}

    def teacher(self, x: Tensor) -> Tensor:
        """Teacher outputs (N, K) for inputs ``x`` (N, D) on the source's tensors' device."""
        h = torch.tanh(x @ self._w1.T / math.sqrt(self.input_dim))  # (N, H)
        return h @ self._w2.T / math.sqrt(self.hidden) + self._b  # (N, K)

    def _move(self, device: torch.device) -> None:
        self._w1, self._w2, self._b = (t.to(device) for t in (self._w1, self._w2, self._b))

    def _teacher_members(self, x: Tensor) -> Tensor:
        """Teacher outputs (K, N, C) of the members' inputs ``x`` (K, N, D), bit for bit those of K
        separate ``teacher(x[k])`` calls (the labels a member would draw alone).

        One product over all K N rows is faster, but whether a BLAS sums each row in the same order at
        another row count is its choice: the first call for each (K, N, device, threads) computes both
        and keeps the flat product only where every output is equal (measured equal on a 2-core AMD
        EPYC, MKL, for every K up to 32 at N = 64 and 1 or 2 threads)."""
        k, n = x.shape[:2]
        key = (k, n, str(x.device), torch.get_num_threads())
        exact = self._flat_exact.get(key)
        if exact is False:
            return torch.stack([self.teacher(xk) for xk in x])
        out = self.teacher(x.reshape(k * n, -1)).view(k, n, -1)
        if exact is None:
            apart = torch.stack([self.teacher(xk) for xk in x])
            self._flat_exact[key] = exact = torch.equal(out, apart)
            if not exact:
                return apart
        return out

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, self.input_dim, generator=generator, device=generator.device)
        return x, self._targets(self.teacher(x), generator)

    def _sample_members(self, n: int, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
        # each member's inputs from its own generator, one teacher pass for all members
        x = torch.stack([torch.randn(n, self.input_dim, generator=g, device=g.device) for g in generators])
        out = self._teacher_members(x)
        if self.task == "classification" and self.label_noise == 0:
            return x, out.argmax(dim=-1)  # nothing drawn after the inputs: one argmax for all
        return x, torch.stack([self._targets(o, g) for o, g in zip(out, generators, strict=True)])

    def _targets(self, out: Tensor, generator: torch.Generator) -> Tensor:
        """Targets of teacher outputs ``out`` (N, C), with the label or target noise drawn from
        ``generator`` (after the inputs)."""
        dev = generator.device
        if self.task == "regression":
            noise = torch.randn(out.shape, generator=generator, device=dev)
            return out + self.noise_std * noise
        n = out.shape[0]
        y = out.argmax(dim=1)
        if self.label_noise > 0:
            flip = torch.rand(n, generator=generator, device=dev) < self.label_noise
            random_y = torch.randint(0, self.num_outputs, (n,), generator=generator, device=dev)
            y = torch.where(flip, random_y, y)
        return y


def teacher(*, root=None, device="cpu", input_dim: int = 32, hidden: int = 64, num_classes: int = 10,
            label_noise: float = 0.0, seed: int = 0, num_eval: int = 10_000) -> TeacherSource:
    """Online classification by a fixed random teacher (the embedded default data set).

    Args:
        root: unused (embedded data). device: where batches are drawn.
        input_dim: D, input dimension. hidden: H, teacher hidden units. num_classes: K.
        label_noise: probability in [0, 1] that a label is replaced by a uniformly random class.
        seed: fixes the teacher and the held-out set. num_eval: size of the held-out ``"validation"`` set.
    """
    check_positive_int(num_classes, "num_classes", 2)
    return TeacherSource(task="classification", input_dim=input_dim, hidden=hidden,
                         num_outputs=num_classes, label_noise=label_noise, noise_std=0.0, seed=seed,
                         num_eval=num_eval, device=device)


def teacher_regression(*, root=None, device="cpu", input_dim: int = 32, hidden: int = 64,
                       output_dim: int = 1, noise_std: float = 0.1, seed: int = 0,
                       num_eval: int = 10_000) -> TeacherSource:
    """Online regression on a fixed random teacher with Gaussian target noise of std ``noise_std``
    (the irreducible mean squared error per output is ``noise_std ** 2``)."""
    check_positive_int(output_dim, "output_dim")
    return TeacherSource(task="regression", input_dim=input_dim, hidden=hidden, num_outputs=output_dim,
                         label_noise=0.0, noise_std=noise_std, seed=seed, num_eval=num_eval,
                         device=device)


def _shift(images: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Circularly shift each image (N, C, H, W) by (dy[i], dx[i]) pixels, as one gather."""
    n, c, h, w = images.shape
    rows = (torch.arange(h)[None, :] - dy[:, None]) % h  # (N, H)
    cols = (torch.arange(w)[None, :] - dx[:, None]) % w  # (N, W)
    return images[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def synthetic_images(*, root=None, device="cpu", num_train: int = 4000, num_validation: int = 1000,
                     num_classes: int = 10, channels: int = 1, size: int = 16, noise: float = 1.0,
                     max_shift: int = 2, seed: int = 0) -> TensorDataSource:
    """Small fixed image classification set (see the module docstring); finite, classes balanced.

    Args:
        root: unused (embedded data). device: where the tensors live.
        num_train, num_validation: split sizes (validation drawn from the same distribution).
        num_classes: K. channels, size: images are (channels, size, size).
        noise: std of the Gaussian pixel noise (prototypes have unit pixel std).
        max_shift: largest circular shift in pixels. seed: fixes prototypes and images.
    """
    num_train = check_positive_int(num_train, "num_train")
    num_validation = check_positive_int(num_validation, "num_validation")
    num_classes = check_positive_int(num_classes, "num_classes", 2)
    channels = check_positive_int(channels, "channels")
    size = check_positive_int(size, "size", 4)
    noise = check_nonneg_float(noise, "noise")
    max_shift = check_positive_int(max_shift, "max_shift", 0)
    gen = torch.Generator().manual_seed(derive_seed(check_seed(seed), 3))
    # Smooth prototypes: 4x4 random patterns upsampled, then scaled to unit pixel std.
    coarse = torch.randn(num_classes, channels, 4, 4, generator=gen)
    protos = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    protos = (protos - protos.mean(dim=(1, 2, 3), keepdim=True)) / protos.std(dim=(1, 2, 3), keepdim=True)
    n = num_train + num_validation
    # Each split holds every class equally often (up to one), in random order.
    labels = torch.cat([(torch.arange(m) % num_classes)[torch.randperm(m, generator=gen)]
                        for m in (num_train, num_validation)])
    dy = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    dx = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=gen)
    images = contrast * _shift(protos[labels], dy, dx) \
        + noise * torch.randn(n, channels, size, size, generator=gen)
    splits = {"train": (images[:num_train], labels[:num_train]),
              "validation": (images[num_train:], labels[num_train:])}
    return TensorDataSource(name="synthetic_images", task="classification", splits=splits,
                            num_outputs=num_classes, device=device)
