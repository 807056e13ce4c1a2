"""Plain convolutional networks of Zhang et al. (2019), appendix E.2: Simple CNN and VGG-11.

Simple CNN (Shallue et al. 2018 "base" configuration, without dropout): conv 5x5 (32 filters, stride
1, same padding) -> ReLU -> max pool 2x2/2 -> conv 5x5 (64) -> ReLU -> max pool 2x2/2 -> dense 1024 ->
ReLU -> dense to the outputs. PyTorch's default initialization.

VGG-11 (Simonyan and Zisserman 2015, configuration "A", CIFAR form): eight 3x3 convolutions with
64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M (M = 2x2 max pool), each followed by ghost batch
norm (ghost batch 32) and ReLU, then one linear layer to the outputs; convolutions use channel-wise
weight normalization (``weight_norm=True``) instead of weight decay, as in the paper. He-normal
initialization of the convolutions.
"""

from __future__ import annotations

from torch import nn

from nnbench.models.layers import ChannelNormConv2d, GhostBatchNorm2d

__all__ = ["VGG11_CONFIG", "simple_cnn", "vgg11"]

VGG11_CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _image_shape(input_shape: tuple[int, ...], model: str, min_size: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise ValueError(f"input_shape for {model!r} must be (C, H, W) with H, W >= {min_size}, "
                         f"got {tuple(input_shape)}")
    return input_shape  # type: ignore[return-value]


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def simple_cnn(input_shape: tuple[int, ...], num_outputs: int, *, channels: tuple[int, int] = (32, 64),
               hidden: int = 1024) -> nn.Sequential:
    """Simple CNN of Shallue et al. (2018) / Zhang et al. (2019) for (C, H, W) images, H, W >= 4.

    Args:
        channels: filters of the two 5x5 convolutions (32, 64 in the paper).
        hidden: units of the dense layer (1024 in the paper).
    """
    c, h, w = _image_shape(input_shape, "simple_cnn", 4)
    if len(channels) != 2:
        raise ValueError(f"channels must be two filter counts, got {channels!r}")
    c1, c2 = (_positive(k, "channels") for k in channels)
    hidden = _positive(hidden, "hidden")
    return nn.Sequential(
        nn.Conv2d(c, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N, c1, H/2, W/2)
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N, c2, H/4, W/4)
        nn.Flatten(),
        nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(),
        nn.Linear(hidden, num_outputs),
    )


def vgg11(input_shape: tuple[int, ...], num_outputs: int, *, width: int = 64, ghost_batch_size: int = 32,
          weight_norm: bool = True) -> nn.Sequential:
    """VGG-11 with ghost batch norm for (C, H, W) images with H, W >= 32 (five 2x2 poolings).

    Args:
        width: filters of the first convolution (64 in the paper); the others scale with it.
        ghost_batch_size: examples per ghost batch (32 in the paper).
        weight_norm: channel-wise unit-norm filters (``ChannelNormConv2d``) as in the paper.
    """
    c, h, w = _image_shape(input_shape, "vgg11", 32)
    width = _positive(width, "width")
    conv = ChannelNormConv2d if weight_norm else nn.Conv2d
    layers: list[nn.Module] = []
    in_ch = c
    for item in VGG11_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out_ch = item * width // 64
        layers += [conv(in_ch, out_ch, 3, padding=1, bias=False),  # BN's shift replaces the bias
                   GhostBatchNorm2d(out_ch, ghost_batch_size), nn.ReLU()]
        in_ch = out_ch
    layers += [nn.Flatten(), nn.Linear(in_ch * (h // 32) * (w // 32), num_outputs)]
    model = nn.Sequential(*layers)
    _he_init_convs(model)
    return model


def _he_init_convs(model: nn.Module) -> None:
    """He et al. (2015) normal initialization (fan_in, ReLU gain) for every convolution; then re-project
    the channel-normalized ones."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, ChannelNormConv2d):
                m.project_()
