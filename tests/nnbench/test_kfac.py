"""K-FAC against an exact Kronecker-factored computation on tiny nets (float64).

The reference never uses the optimizer's hooks: it runs every example through the network on its
own, takes dl_n/ds (per-example output gradients) with torch.autograd.grad, builds the input rows
(patches by an explicit loop over output positions for convolutions), forms A and G, and solves
kron(A_d, G_d) vec(U) = vec(V) with a dense solver.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.optim import KFAC, build_optimizer

DTYPE = torch.float64


# ---- the independent reference ------------------------------------------------------------------
def _input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Rows a_t (one example, x with a leading batch dim of 1), homogeneous 1 appended if bias."""
    if isinstance(module, nn.Conv2d):
        pad = module._reversed_padding_repeated_twice
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        xp = F.pad(x, pad, mode=mode)[0]  # (C, H + pads, W + pads)
        (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
        out_h = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
        out_w = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
        rows = []
        for i in range(out_h):  # row-major over output positions, as the output's (H', W')
            for j in range(out_w):
                rows_i = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols_j = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                window = xp[:, rows_i, cols_j]  # (C, kh, kw)
                rows.append(window.reshape(-1))  # (C kh kw), channel-major like weight.view(C_out, -1)
        a = torch.stack(rows)
    else:
        a = x.reshape(-1, x.shape[-1])
    if module.bias is not None:
        a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
    return a


def _output_rows(module: nn.Module, g: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Conv2d):
        return g[0].reshape(g.shape[1], -1).T  # (H' W', C_out), same position order as the patches
    return g.reshape(-1, g.shape[-1])


def exact_factors(model: nn.Sequential, x, y, loss_fn):
    """{layer index: (A, G, V)} with A = E_n sum_t a a^T, G = E_n (1/T) sum_t g g^T, V = mean grad."""
    layers = [i for i, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv2d))]
    sums = {i: [0.0, 0.0, 0.0] for i in layers}
    n_examples = x.shape[0]
    for n in range(n_examples):
        h, inputs, outputs = x[n : n + 1], {}, {}
        for i, module in enumerate(model):
            if i in layers:
                inputs[i] = h.detach()
                outputs[i] = module(h)
                h = outputs[i].clone()  # an in-place activation must not alter s itself
            else:
                h = module(h)
        loss = loss_fn(h, y[n : n + 1])
        grads = torch.autograd.grad(loss, [outputs[i] for i in layers])
        for i, g in zip(layers, grads, strict=True):
            a, gr = _input_rows(model[i], inputs[i]), _output_rows(model[i], g)
            sums[i][0] = sums[i][0] + a.T @ a
            sums[i][1] = sums[i][1] + gr.T @ gr / gr.shape[0]
            sums[i][2] = sums[i][2] + gr.T @ a  # per-example weight gradient sum_t g_t a_t^T
    return {i: tuple(s / n_examples for s in sums[i]) for i in layers}


def exact_update(A, G, V, damping):
    """vec(U) = (A_d kron G_d)^-1 vec(V) with factored Tikhonov damping (column-major vec)."""
    pi = math.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]))
    A_d = A + math.sqrt(damping) * pi * torch.eye(A.shape[0], dtype=A.dtype)
    G_d = G + math.sqrt(damping) / pi * torch.eye(G.shape[0], dtype=G.dtype)
    vec_u = torch.linalg.solve(torch.kron(A_d, G_d), V.T.reshape(-1))
    return vec_u.reshape(V.shape[1], V.shape[0]).T


def layer_grad_matrix(module):
    v = module.weight.grad.reshape(module.weight.shape[0], -1)
    if module.bias is not None:
        v = torch.cat([v, module.bias.grad[:, None]], dim=1)
    return v


def layer_delta_matrix(module, before):
    d = (before[0] - module.weight.detach()).reshape(module.weight.shape[0], -1)
    if module.bias is not None:
        d = torch.cat([d, (before[1] - module.bias.detach())[:, None]], dim=1)
    return d


def snapshot(module):
    return (module.weight.detach().clone(), None if module.bias is None else module.bias.detach().clone())


def rel_err(a, b):
    return float((a - b).norm() / b.norm())



def _mlp(activation: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), activation, nn.Linear(4, 2)).to(DTYPE)


def _one_step_check(model, x, y, loss_fn, *, damping, lr=0.1, kl_clip=None, **kwargs):
    """Run one K-FAC step and return [(update, exact update, V, exact V)] per layer."""
    reference = exact_factors(copy.deepcopy(model), x, y, loss_fn)
    opt = KFAC(model, lr=lr, damping=damping, kl_clip=kl_clip, **kwargs)
    before = {i: snapshot(model[i]) for i in reference}
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    grads = {i: layer_grad_matrix(model[i]).clone() for i in reference}
    opt.step()
    out = []
    for i, (A, G, V) in reference.items():
        update = layer_delta_matrix(model[i], before[i]) / lr
        out.append((update, exact_update(A, G, V, damping), grads[i], V))
        state = opt.state[model[i].weight]
        assert rel_err(state["A"], A) < 1e-10 and rel_err(state["G"], G) < 1e-10
    return out


# ---- exactness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", [nn.Tanh(), nn.ReLU(inplace=True)], ids=["tanh", "relu_inplace"])
@pytest.mark.parametrize("damping", [1e-3, 0.3])
def test_linear_net_update_is_the_exact_kronecker_solve(activation, damping):
    model = _mlp(activation)
    x = torch.randn(8, 3, dtype=DTYPE)
    y = torch.randint(0, 2, (8,))
    checks = _one_step_check(model, x, y, F.cross_entropy, damping=damping)
    for update, expected, grad, grad_from_rows in checks:
        assert rel_err(grad_from_rows, grad) < 1e-10  # the reference's per-example rows are right
        assert rel_err(update, expected) < 1e-6


@pytest.mark.parametrize(
    "conv_kwargs",
    [
        dict(padding=1),
        dict(padding=1, stride=2, bias=False, padding_mode="reflect"),
        dict(padding=0, dilation=2),
    ],
    ids=["pad1", "stride2_nobias_reflect", "dilation2"],
)
def test_conv_net_update_is_the_exact_kronecker_solve(conv_kwargs):
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, **conv_kwargs)
    with torch.no_grad():
        out_shape = conv(torch.zeros(1, 2, 6, 6)).shape
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(math.prod(out_shape[1:]), 3)).to(DTYPE)
    x = torch.randn(5, 2, 6, 6, dtype=DTYPE)
    y = torch.randint(0, 3, (5,))
    checks = _one_step_check(model, x, y, F.cross_entropy, damping=1e-2)
    assert len(checks) == 2
    for update, expected, grad, grad_from_rows in checks:
        assert rel_err(grad_from_rows, grad) < 1e-10
        assert rel_err(update, expected) < 1e-6


def test_linear_on_sequences_treats_positions_like_spatial_locations():
    # (N, T, d) inputs, per-example loss = mean over the T positions, batch loss = mean over N.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5)).to(DTYPE)
    x = torch.randn(4, 6, 3, dtype=DTYPE)
    y = torch.randint(0, 5, (4, 6))

    def seq_loss(logits, labels):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))

    for update, expected, grad, grad_from_rows in _one_step_check(model, x, y, seq_loss, damping=1e-2):
        assert rel_err(grad_from_rows, grad) < 1e-10
        assert rel_err(update, expected) < 1e-6


def test_kl_clip_scales_the_update_by_nu():
    model = _mlp(nn.Tanh())
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    lr, kl_clip = 0.5, 1e-6
    checks = _one_step_check(model, x, y, F.cross_entropy, damping=1e-2, lr=lr, kl_clip=kl_clip)
    quadratic = lr**2 * sum(float((expected * v).sum()) for _, expected, v, _ in checks)
    nu = min(1.0, math.sqrt(kl_clip / quadratic))
    assert nu < 0.1  # the clip is active in this test
    for update, expected, _, _ in checks:
        assert rel_err(update, nu * expected) < 1e-6


def test_huge_damping_approaches_sgd_scaled_by_one_over_damping():
    # (A + sqrt(l) pi I)^-1 (x) (G + sqrt(l)/pi I)^-1 -> I / l as l -> infinity.
    damping = 1e8
    model = _mlp(nn.Tanh())
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    for update, _, grad, _ in _one_step_check(model, x, y, F.cross_entropy, damping=damping):
        assert rel_err(damping * update, grad) < 1e-3


# ---- schedule of the statistics -----------------------------------------------------------------
def _train_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def test_factors_and_inverses_change_only_on_their_intervals():
    model = _mlp(nn.Tanh())
    opt = KFAC(model, lr=0.05, cov_update_every=2, inv_update_every=3)
    state = lambda: opt.state[model[0].weight]  # noqa: E731
    previous = None
    for step in range(8):
        x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
        _train_step(model, opt, x, y)
        current = {key: state()[key].clone() for key in ("A", "G", "A_inv", "G_inv")}
        if previous is not None:
            assert (not torch.equal(current["A"], previous["A"])) == (step % 2 == 0), step
            assert (not torch.equal(current["G"], previous["G"])) == (step % 2 == 0), step
            assert (not torch.equal(current["A_inv"], previous["A_inv"])) == (step % 3 == 0), step
            assert (not torch.equal(current["G_inv"], previous["G_inv"])) == (step % 3 == 0), step
        previous = current
    assert state()["num_cov_updates"] == 4


def test_factor_ema_starts_at_the_batch_statistics_then_uses_min_of_running_mean_and_decay():
    model = _mlp(nn.Tanh())
    opt = KFAC(model, lr=1e-3, cov_ema_decay=0.3)
    batches = [(torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))) for _ in range(3)]
    factors = []
    for x, y in batches:
        factors.append(exact_factors(copy.deepcopy(model), x, y, F.cross_entropy)[0][0])
        _train_step(model, opt, x, y)
    # decays min(1 - 1/c, 0.3): 0 (c = 1), 0.3 (c = 2: 0.5 capped), 0.3 (c = 3)
    expected = factors[0]
    for batch_a in factors[1:]:
        expected = 0.3 * expected + 0.7 * batch_a
    assert rel_err(opt.state[model[0].weight]["A"], expected) < 1e-10


def test_eval_mode_no_grad_and_torch_func_passes_leave_the_statistics_alone():
    model = _mlp(nn.Tanh())
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    other = torch.randn(16, 3, dtype=DTYPE)
    expected = exact_factors(copy.deepcopy(model), x, y, F.cross_entropy)[0][0]
    opt = KFAC(model, lr=0.05)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():  # a training-mode pass without grad
        model(other)
    model.eval()
    model(other).sum().backward()  # an evaluation-mode pass with a backward
    model.train()
    params = dict(model.named_parameters())
    # a measurement through torch.func (as the instruments do) in training mode
    torch.func.grad(lambda p: torch.func.functional_call(model, p, (other,)).sum())(params)
    for p in model.parameters():  # drop the grads the extra passes added; keep the real ones
        p.grad = None
    F.cross_entropy(model(x), y).backward()
    model(other)  # a forward whose backward never runs leaves no half pair
    opt.step()
    assert rel_err(opt.state[model[0].weight]["A"], expected) < 1e-10


# ---- the update rule ----------------------------------------------------------------------------
def test_momentum_is_heavy_ball_on_the_preconditioned_direction():
    lr, momentum = 0.1, 0.7
    model = _mlp(nn.Tanh())
    # factors and inverses only at step 0, so both steps use the same stored inverses
    opt = KFAC(model, lr=lr, momentum=momentum, kl_clip=None, cov_update_every=100, inv_update_every=100)
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    layer = model[2]
    directions = []
    for _ in range(2):
        before = snapshot(layer)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        state = opt.state[layer.weight]
        v = layer_grad_matrix(layer).clone()
        opt.step()
        directions.append(state["G_inv"] @ v @ state["A_inv"])
        delta = layer_delta_matrix(layer, before)
    assert rel_err(delta, lr * (momentum * directions[0] + directions[1])) < 1e-10


def test_other_parameters_get_plain_sgd_and_weight_decay_is_added_after_preconditioning():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 2)).to(DTYPE)
    twin = copy.deepcopy(model)
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    lr, wd = 0.1, 0.01
    opt = KFAC(model, lr=lr, kl_clip=None, weight_decay=wd)
    opt_twin = KFAC(twin, lr=lr, kl_clip=None)
    assert opt.preconditioned_modules == ("0", "3")
    before = [p.detach().clone() for p in model.parameters()]
    for m, o in ((model, opt), (twin, opt_twin)):
        _train_step(m, o, x, y)
    norm = model[1]
    for p, p0 in zip((norm.weight, norm.bias), before[2:4], strict=True):
        assert torch.allclose(p0 - p.detach(), lr * (p.grad + wd * p0), rtol=1e-12, atol=0)
    for p, q, p0 in zip(model.parameters(), twin.parameters(), before, strict=True):
        assert torch.allclose(q.detach() - p.detach(), lr * wd * p0, rtol=1e-9, atol=1e-15)


def test_state_dict_round_trip_continues_identically():
    model = _mlp(nn.Tanh())
    opt = KFAC(model, lr=0.05, momentum=0.5, inv_update_every=2)
    batches = [(torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))) for _ in range(4)]
    for x, y in batches[:3]:
        _train_step(model, opt, x, y)
    twin = copy.deepcopy(model)
    opt_twin = KFAC(twin, lr=0.05, momentum=0.5, inv_update_every=2)
    checkpoint = io.BytesIO()  # through serialisation, as a checkpoint would (no aliased buffers)
    torch.save(opt.state_dict(), checkpoint)
    checkpoint.seek(0)
    opt_twin.load_state_dict(torch.load(checkpoint))
    _train_step(model, opt, *batches[3])
    _train_step(twin, opt_twin, *batches[3])
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_copies_of_the_model_do_not_feed_the_optimizer_or_copy_it():
    import pickle

    model = _mlp(nn.Tanh())
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    expected = exact_factors(copy.deepcopy(model), x, y, F.cross_entropy)[0][0]
    opt = KFAC(model, lr=0.05)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):  # e.g. weight averaging
        twin(torch.randn(16, 3, dtype=DTYPE)).sum().backward()
    opt.step()
    assert rel_err(opt.state[model[0].weight]["A"], expected) < 1e-10


def test_diverged_statistics_give_nan_parameters_not_an_exception():
    model = _mlp(nn.Tanh())
    opt = KFAC(model, lr=0.05)
    x = torch.randn(8, 3, dtype=DTYPE)
    x[0, 0] = math.inf
    _train_step(model, opt, x, torch.randint(0, 2, (8,)))
    assert not torch.isfinite(model[0].weight).all()


def test_grouped_convolutions_fall_back_to_the_plain_gradient_and_hooks_can_be_removed():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 9, 2)).to(DTYPE)
    opt = KFAC(model, lr=0.1, kl_clip=None)
    assert opt.preconditioned_modules == ("2",)
    before = model[0].weight.detach().clone()
    _train_step(model, opt, torch.randn(4, 2, 5, 5, dtype=DTYPE), torch.randint(0, 2, (4,)))
    assert torch.allclose(before - model[0].weight.detach(), 0.1 * model[0].weight.grad, rtol=1e-12, atol=0)
    opt.remove_hooks()
    assert not model[2]._forward_hooks


def test_damped_inverse_cholesky_and_its_eigh_fallback_match_a_dense_inverse():
    from nnbench.optim.kfac import _damped_inverse

    gen = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=DTYPE))
    psd = q @ torch.diag(torch.tensor([3.0, 1.0, 0.5, 0.1, 0.0, 0.0], dtype=DTYPE)) @ q.T
    damping = torch.tensor(0.01, dtype=DTYPE)
    expected = torch.linalg.inv(psd + damping * torch.eye(6, dtype=DTYPE))
    assert rel_err(_damped_inverse(psd, damping), expected) < 1e-10
    # an eigenvalue of -1e-3 (round-off far beyond the damping): Cholesky fails, the clipped
    # eigendecomposition treats it as 0
    indefinite = psd - 1e-3 * torch.outer(q[:, 5], q[:, 5])
    assert rel_err(_damped_inverse(indefinite, torch.tensor(1e-6, dtype=DTYPE)),
                   torch.linalg.inv(psd + 1e-6 * torch.eye(6, dtype=DTYPE))) < 1e-8


def test_tied_weight_is_preconditioned_once_with_the_linear_layers_factors():
    # a language-model head sharing the embedding matrix (Zhang et al. appendix A.1's case)
    torch.manual_seed(5)
    embed, head = nn.Embedding(7, 4).to(DTYPE), nn.Linear(4, 7, bias=False).to(DTYPE)
    head.weight = embed.weight
    model = nn.Sequential(embed, nn.Tanh(), head)
    lr = 0.1
    opt = KFAC(model, lr=lr, kl_clip=None)
    assert opt.preconditioned_modules == ("2",) and len(opt.param_groups[0]["params"]) == 1
    before = embed.weight.detach().clone()
    tokens = torch.randint(0, 7, (5, 3))
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(tokens).reshape(-1, 7), tokens.roll(1, 1).reshape(-1)).backward()
    grad = embed.weight.grad.clone()  # embedding and head contributions together
    opt.step()
    state = opt.state[head.weight]
    assert rel_err(before - embed.weight.detach(), lr * state["G_inv"] @ grad @ state["A_inv"]) < 1e-10


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(lr=0.0), "lr"),
        (dict(lr=math.nan), "lr"),
        (dict(lr=0.1, momentum=1.0), "momentum"),
        (dict(lr=0.1, damping=0.0), "damping"),
        (dict(lr=0.1, kl_clip=-1.0), "kl_clip"),
        (dict(lr=0.1, cov_ema_decay=1.0), "cov_ema_decay"),
        (dict(lr=0.1, cov_update_every=0), "cov_update_every"),
        (dict(lr=0.1, inv_update_every=2.5), "inv_update_every"),
        (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        KFAC(_mlp(nn.Tanh()), **kwargs)


def test_kfac_needs_a_module_with_trainable_parameters():
    with pytest.raises(ValueError, match="model"):
        KFAC([torch.zeros(3, requires_grad=True)], lr=0.1)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        build_optimizer("kfac", frozen, lr=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_update_matches_cpu():
    model = _mlp(nn.Tanh())
    gpu_model = copy.deepcopy(model).cuda()
    x, y = torch.randn(8, 3, dtype=DTYPE), torch.randint(0, 2, (8,))
    for m, xx, yy in ((model, x, y), (gpu_model, x.cuda(), y.cuda())):
        _train_step(m, KFAC(m, lr=0.1), xx, yy)
    for p, q in zip(model.parameters(), gpu_model.parameters(), strict=True):
        assert rel_err(q.cpu(), p) < 1e-8
