"""CIFAR ResNets (He et al. 2016, section 4.2): ResNet-8 without batch norm, ResNet-32 with ghost BN.

Both have a 3x3 stem convolution with 16 filters, three stages of ``n`` residual blocks (two 3x3
convolutions each) with 16, 32 and 64 filters (the first block of stages 2 and 3 has stride 2), global
average pooling and one linear layer: 6n + 2 layers. Shortcuts are He et al.'s option A (identity;
when the shape changes, subsample by 2 and append zero channels), so the layer count is exact and the
shortcuts have no parameters.

- ``resnet8`` (n = 1; Shallue et al. 2018, appendix B, used by Zhang et al. 2019 unchanged): the
  pre-activation blocks of He et al. (2016b) ("v2"), no batch norm, convolutions with biases.
- ``resnet32`` (n = 5; Zhang et al. 2019, appendix E.2): the original blocks of He et al. (2016)
  (conv-BN-ReLU-conv-BN, add, ReLU) with ghost batch norm (ghost batch 32) and channel-wise weight
  normalization of every convolution instead of weight decay.

Convolutions are He-normal initialized (fan_in, ReLU gain), biases zero.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nnbench.models.cnn import _he_init_convs, _image_shape, _positive
from nnbench.models.layers import ChannelNormConv2d, GhostBatchNorm2d

__all__ = ["CifarResNet", "resnet8", "resnet32"]


class _ShortcutA(nn.Module):
    """He et al. option A: identity, or stride-2 subsampling plus zero channels when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = out_ch - in_ch, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # append zero channels
        return x


class _PreActBlock(nn.Module):
    """ResNet v2 block without normalization: x + conv(relu(conv(relu(x))))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = _ShortcutA(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + self.shortcut(x)


class _BasicBlock(nn.Module):
    """ResNet v1 block with ghost BN: relu(bn(conv(relu(bn(conv(x))))) + x)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, conv: type[nn.Conv2d], ghost: int) -> None:
        super().__init__()
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = GhostBatchNorm2d(out_ch, ghost)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = GhostBatchNorm2d(out_ch, ghost)
        self.shortcut = _ShortcutA(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n + 2) for (C, H, W) images; ``batch_norm`` selects v1 + ghost BN, else v2 without BN."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, *, n: int, width: int = 16,
                 batch_norm: bool, ghost_batch_size: int = 32, weight_norm: bool = True) -> None:
        super().__init__()
        c, _, _ = _image_shape(input_shape, f"resnet{6 * n + 2}", 4)
        widths = (width, 2 * width, 4 * width)
        conv = ChannelNormConv2d if (batch_norm and weight_norm) else nn.Conv2d
        self.batch_norm = batch_norm
        self.stem = conv(c, width, 3, padding=1, bias=not batch_norm)
        self.stem_bn = GhostBatchNorm2d(width, ghost_batch_size) if batch_norm else nn.Identity()
        blocks: list[nn.Module] = []
        in_ch = width
        for stage, out_ch in enumerate(widths):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(_BasicBlock(in_ch, out_ch, stride, conv, ghost_batch_size) if batch_norm
                              else _PreActBlock(in_ch, out_ch, stride))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch, num_outputs)
        _he_init_convs(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem_bn(self.stem(x))  # (N, w, H, W)
        if self.batch_norm:
            out = F.relu(out)  # v1: the stem is conv-BN-ReLU; v2 blocks start with their own ReLU
        out = self.blocks(out)  # (N, 4w, H/4, W/4)
        if not self.batch_norm:
            out = F.relu(out)  # v2: final activation before pooling
        return self.fc(out.mean(dim=(2, 3)))  # global average pool -> (N, num_outputs)


def resnet8(input_shape: tuple[int, ...], num_outputs: int, *, width: int = 16) -> CifarResNet:
    """ResNet-8 of Shallue et al. (2018): 7 convolutions + 1 linear layer, no batch norm.

    Args:
        width: filters of the first stage (16; the stages have width, 2 width, 4 width).
    """
    return CifarResNet(input_shape, num_outputs, n=1, width=_positive(width, "width"), batch_norm=False)


def resnet32(input_shape: tuple[int, ...], num_outputs: int, *, width: int = 16, ghost_batch_size: int = 32,
             weight_norm: bool = True) -> CifarResNet:
    """ResNet-32 with ghost batch norm: 31 convolutions + 1 linear layer (Zhang et al. 2019, E.2).

    Args:
        width: filters of the first stage (16). ghost_batch_size: 32 in the paper.
        weight_norm: channel-wise unit-norm filters (``ChannelNormConv2d``) as in the paper.
    """
    return CifarResNet(input_shape, num_outputs, n=5, width=_positive(width, "width"), batch_norm=True,
                       ghost_batch_size=ghost_batch_size, weight_norm=weight_norm)
