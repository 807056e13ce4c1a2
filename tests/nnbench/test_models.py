"""nnbench.models: every builder's shapes and gradients, the architectures' layer counts, ghost batch
norm against per-chunk F.batch_norm, channel-normalized convolutions, Park et al.'s parameterizations,
and the Transformer's causality and tied embedding."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.models import (
    MODELS,
    ChannelNormConv2d,
    GhostBatchNorm2d,
    NTKLinear,
    build_model,
    model_kwargs,
)

# (input_shape, num_outputs, kwargs) small enough for a CPU test; one entry per registered model.
TINY = {
    "linear": ((3, 4, 4), 5, {}),
    "fc": ((7,), 3, {"depth": 2, "width": 16}),
    "simple_cnn": ((1, 8, 8), 10, {"channels": (4, 8), "hidden": 16}),
    "resnet8": ((3, 8, 8), 10, {"width": 4}),
    "resnet32": ((3, 8, 8), 10, {"width": 4, "ghost_batch_size": 4}),
    "vgg11": ((3, 32, 32), 10, {"width": 8, "ghost_batch_size": 4}),
    "transformer": ((12,), 20, {"d_model": 16, "num_heads": 2, "d_ff": 32}),
}


def test_every_registered_model_is_covered():
    assert set(TINY) == set(MODELS)


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_shape_and_backward(name):
    torch.manual_seed(0)
    shape, k, kwargs = TINY[name]
    model = build_model(name, shape, k, **kwargs)
    n = 10
    if name == "transformer":
        x = torch.randint(0, k, (n, *shape))
        out = model(x)
        assert out.shape == (n, shape[0], k)
        loss = F.cross_entropy(out.reshape(-1, k), torch.randint(0, k, (n * shape[0],)))
    else:
        out = model(torch.randn(n, *shape))
        assert out.shape == (n, k)
        loss = F.cross_entropy(out, torch.randint(0, k, (n,)))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        again = model(x if name == "transformer" else torch.randn(3, *shape))
    assert torch.isfinite(again).all()


def test_build_model_errors():
    with pytest.raises(ValueError, match="known: .*resnet8"):
        build_model("resnet50", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="unknown option.*'dropout'.*accepts"):
        build_model("simple_cnn", (1, 28, 28), 10, dropout=0.4)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("fc", (0, 3), 10)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("simple_cnn", (28, 28), 10)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("vgg11", (3, 16, 16), 10)
    with pytest.raises(ValueError, match="num_outputs"):
        build_model("linear", (4,), 0)
    with pytest.raises(ValueError, match="parameterization"):
        build_model("fc", (4,), 2, parameterization="mup")
    with pytest.raises(ValueError, match="num_heads"):
        build_model("transformer", (8,), 10, d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="ghost_batch_size"):
        build_model("resnet32", (3, 8, 8), 10, ghost_batch_size=1)
    assert "ghost_batch_size" in model_kwargs("vgg11")


# ---------------------------------------------------------------- architectures as in the paper
def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_simple_cnn_parameter_count_matches_the_paper_architecture():
    model = build_model("simple_cnn", (1, 28, 28), 10)
    conv1 = 5 * 5 * 1 * 32 + 32
    conv2 = 5 * 5 * 32 * 64 + 64
    dense = (64 * 7 * 7) * 1024 + 1024  # 28 -> 14 -> 7 after two 2x2 poolings
    out = 1024 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == conv1 + conv2 + dense + out
    assert _count(model, nn.Dropout) == 0


def test_resnet_and_vgg_layer_counts():
    r8 = build_model("resnet8", (3, 32, 32), 10)
    assert (_count(r8, nn.Conv2d), _count(r8, nn.Linear), _count(r8, nn.BatchNorm2d)) == (7, 1, 0)
    r32 = build_model("resnet32", (3, 32, 32), 10)
    assert (_count(r32, nn.Conv2d), _count(r32, nn.Linear)) == (31, 1)
    assert _count(r32, GhostBatchNorm2d) == 31 and _count(r32, ChannelNormConv2d) == 31
    # He et al. (2016) Table 6: ResNet-32 has 0.46M parameters
    assert round(sum(p.numel() for p in r32.parameters()) / 1e6, 2) == 0.46
    vgg = build_model("vgg11", (3, 32, 32), 10)
    assert (_count(vgg, nn.Conv2d), _count(vgg, nn.Linear), _count(vgg, GhostBatchNorm2d)) == (8, 1, 8)
    assert [m.out_channels for m in vgg.modules() if isinstance(m, nn.Conv2d)] == \
        [64, 128, 256, 256, 512, 512, 512, 512]
    plain = build_model("resnet32", (3, 8, 8), 10, width=4, weight_norm=False)
    assert _count(plain, ChannelNormConv2d) == 0


def test_resnet8_blocks_are_identity_plus_residual():
    # with every residual branch zeroed, ResNet-8 (v2) is fc(avgpool(relu(shortcut(stem(x))))),
    # which tests the option-A shortcut (subsample by 2, append zero channels)
    torch.manual_seed(0)
    model = build_model("resnet8", (3, 8, 8), 5, width=4)
    with torch.no_grad():
        for block in model.blocks:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
    x = torch.randn(2, 3, 8, 8)
    h = model.stem(x)[:, :, ::4, ::4]  # two stride-2 stages
    h = F.pad(h, (0, 0, 0, 0, 0, 16 - 4))  # 4 -> 16 channels, zeros appended
    expected = model.fc(F.relu(h).mean(dim=(2, 3)))
    torch.testing.assert_close(model(x), expected)


# ---------------------------------------------------------------- ghost batch norm
def test_ghost_batch_norm_equals_batch_norm_per_chunk():
    torch.manual_seed(0)
    gbn = GhostBatchNorm2d(3, ghost_batch_size=32, momentum=0.1)
    with torch.no_grad():
        gbn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        gbn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.randn(70, 3, 4, 5) * 3 + 1  # chunks of 32, 32 and 6
    out = gbn(x)
    chunks = x.split(32)
    expected = torch.cat([F.batch_norm(c, None, None, gbn.weight, gbn.bias, training=True, eps=gbn.eps)
                          for c in chunks])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # running statistics: momentum 0.1 towards the mean over chunks of chunk means / unbiased variances
    mean = torch.stack([c.mean(dim=(0, 2, 3)) for c in chunks]).mean(0)
    var = torch.stack([c.var(dim=(0, 2, 3), unbiased=True) for c in chunks]).mean(0)
    torch.testing.assert_close(gbn.running_mean, 0.1 * mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gbn.running_var, 0.9 + 0.1 * var, rtol=1e-5, atol=1e-6)
    assert gbn.num_batches_tracked.item() == 1
    # eval: the running statistics, like BatchNorm2d
    gbn.eval()
    ref = F.batch_norm(x, gbn.running_mean, gbn.running_var, gbn.weight, gbn.bias, training=False,
                       eps=gbn.eps)
    torch.testing.assert_close(gbn(x), ref)


def test_ghost_batch_norm_gradients_and_small_batches():
    torch.manual_seed(1)
    x = torch.randn(64, 2, 3, 3, requires_grad=True)
    gbn = GhostBatchNorm2d(2, ghost_batch_size=16)
    (gbn(x) ** 3).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref = torch.cat([F.batch_norm(c, None, None, gbn.weight, gbn.bias, training=True, eps=gbn.eps)
                     for c in x2.split(16)])
    (ref ** 3).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    # a batch no larger than one ghost batch is ordinary batch norm
    bn = nn.BatchNorm2d(2)
    small = torch.randn(16, 2, 3, 3)
    torch.testing.assert_close(GhostBatchNorm2d(2, ghost_batch_size=16)(small), bn(small))


def test_ghost_batch_norm_objective_does_not_depend_on_batch_size():
    # the point of ghost BN (Zhang et al. E.2): a batch of 4 ghost batches = 4 separate batches of 32
    torch.manual_seed(2)
    gbn = GhostBatchNorm2d(3, ghost_batch_size=32)
    x = torch.randn(128, 3, 2, 2)
    big = gbn(x)
    separate = torch.cat([gbn(c) for c in x.split(32)])
    torch.testing.assert_close(big, separate)
    assert not torch.allclose(big, nn.BatchNorm2d(3)(x), atol=1e-3)


# ---------------------------------------------------------------- channel-wise weight normalization
def _channel_norms(conv):
    return conv.weight.detach().flatten(1).norm(dim=1)


def test_channel_norm_conv_projects_after_updates_only():
    torch.manual_seed(0)
    conv = ChannelNormConv2d(3, 5, 3, padding=1, bias=False)
    torch.testing.assert_close(_channel_norms(conv), torch.ones(5))
    bn = GhostBatchNorm2d(5, ghost_batch_size=4)
    x = torch.randn(8, 3, 6, 6)
    before = bn(conv(x)).detach()
    with torch.no_grad():  # an "optimizer step" that rescales the filters
        conv.weight.mul_(torch.arange(1.0, 6.0).view(5, 1, 1, 1))
    assert not torch.allclose(_channel_norms(conv), torch.ones(5))
    conv.eval()
    conv(x)  # evaluation never projects
    assert not torch.allclose(_channel_norms(conv), torch.ones(5))
    conv.train()
    out = bn(conv(x))
    torch.testing.assert_close(_channel_norms(conv), torch.ones(5))
    # conv + BN is invariant to filter scale, so the projection leaves the function unchanged
    torch.testing.assert_close(out, before, rtol=1e-4, atol=1e-4)
    # two forwards before one backward must not trip autograd's in-place check
    loss = bn(conv(x)).pow(2).sum() + bn(conv(x)).pow(2).sum()
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()


def test_resnet32_training_step_keeps_unit_channel_norms():
    torch.manual_seed(0)
    model = build_model("resnet32", (3, 8, 8), 10, width=4, ghost_batch_size=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    convs = [m for m in model.modules() if isinstance(m, ChannelNormConv2d)]
    assert any(not torch.allclose(_channel_norms(c), torch.ones_like(_channel_norms(c))) for c in convs)
    model(x)
    for c in convs:
        torch.testing.assert_close(_channel_norms(c), torch.ones_like(_channel_norms(c)))


# ---------------------------------------------------------------- Park et al. parameterizations
def _pair(seed, **kwargs):
    torch.manual_seed(seed)
    std = build_model("fc", (20,), 4, parameterization="standard", **kwargs)
    torch.manual_seed(seed)
    ntk = build_model("fc", (20,), 4, parameterization="ntk", **kwargs)
    return std, ntk


def test_ntk_and_standard_compute_the_same_function_at_init_but_not_the_same_gradients():
    std, ntk = _pair(0, depth=3, width=64)
    x = torch.randn(16, 20)
    # both draw W from N(0, 1) scaled once: the same seed gives the same function
    torch.testing.assert_close(ntk(x), std(x), rtol=1e-4, atol=1e-5)
    F.cross_entropy(std(x), torch.arange(16) % 4).backward()
    F.cross_entropy(ntk(x), torch.arange(16) % 4).backward()
    std_lin = [m for m in std.modules() if isinstance(m, nn.Linear)]
    ntk_lin = [m.linear for m in ntk.modules() if isinstance(m, NTKLinear)]
    assert len(std_lin) == len(ntk_lin) == 4
    for s, n in zip(std_lin, ntk_lin, strict=True):
        # eq. (8): dL/dW = dL/dz y^T / sqrt(fan_in), eq. (7): dL/dW = dL/dz y^T
        torch.testing.assert_close(n.weight.grad, s.weight.grad / math.sqrt(s.in_features),
                                   rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(n.bias.grad, s.bias.grad, rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(n.weight.std(), s.weight.std() * math.sqrt(s.in_features),
                                   rtol=1e-5, atol=0)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_critical_initialization_preserves_the_output_scale(parameterization):
    # ReLU with sigma_w^2 = 2: E[z_out^2] = 2 |x|^2 / D + (L + 1) sigma_b^2 exactly, at any width
    depth, width, sigma_b = 3, 32, 0.5  # a large sigma_b so the bias term is tested too
    x = torch.randn(1, 20) * 1.5
    expected = 2 * x.pow(2).sum().item() / 20 + (depth + 1) * sigma_b ** 2
    torch.manual_seed(0)
    outs = torch.cat([build_model("fc", (20,), 8, depth=depth, width=width, sigma_b=sigma_b,
                                  parameterization=parameterization)(x) for _ in range(300)])
    second_moment = outs.pow(2).mean().item()  # 2400 outputs; relative sd ~ 0.05
    assert second_moment == pytest.approx(expected, rel=0.15)
    # PyTorch's default initialization is far from critical: the test can tell
    torch.manual_seed(0)
    default = torch.cat([nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                                       nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))(x)
                         for _ in range(300)])
    assert default.pow(2).mean().item() < 0.5 * expected


# ---------------------------------------------------------------- transformer
def test_transformer_is_causal_and_ties_its_embedding():
    torch.manual_seed(0)
    model = build_model("transformer", (10,), 30, d_model=16, num_heads=4)
    assert model.head.weight is model.embed.weight
    x = torch.randint(0, 30, (2, 10))
    out = model(x)
    x2 = x.clone()
    x2[:, 6] = (x2[:, 6] + 1) % 30
    out2 = model(x2)
    torch.testing.assert_close(out[:, :6], out2[:, :6])  # the past does not see the future
    assert not torch.allclose(out[:, 6:], out2[:, 6:])
    assert model(x[:, :4]).shape == (2, 4, 30)  # shorter sequences work
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(0, 30, (1, 11)))
    untied = build_model("transformer", (10,), 30, d_model=16, num_heads=4, tie_embeddings=False)
    assert untied.head.weight is not untied.embed.weight
    # tying removes exactly one vocab x d_model matrix
    n_tied = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n_tied == 30 * 16
