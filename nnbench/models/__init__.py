"""Model builders for nnbench (Zhang et al. 2019, appendix E.2; Park et al. 2019).

See ``nnbench.models.registry`` for ``MODELS`` and ``build_model``.
"""

from nnbench.models.cnn import simple_cnn, vgg11
from nnbench.models.layers import ChannelNormConv2d, GhostBatchNorm2d, NTKLinear
from nnbench.models.mlp import PARAMETERIZATIONS, fc, linear
from nnbench.models.registry import MODELS, build_model, model_kwargs
from nnbench.models.resnet import CifarResNet, resnet8, resnet32
from nnbench.models.transformer import TransformerLM, transformer

__all__ = [
    "MODELS",
    "PARAMETERIZATIONS",
    "ChannelNormConv2d",
    "CifarResNet",
    "GhostBatchNorm2d",
    "NTKLinear",
    "TransformerLM",
    "build_model",
    "fc",
    "linear",
    "model_kwargs",
    "resnet8",
    "resnet32",
    "simple_cnn",
    "transformer",
    "vgg11",
]
