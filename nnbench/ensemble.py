"""Many trials at once: a group of a study's trials trained together as one batched ensemble.

A study's trials share the workload, the optimizer and the batch size and differ only in their
hyperparameters and seeds. For a small model one trial leaves most of a CPU (and nearly all of a GPU)
idle: per-step overhead (Python, kernel launches, the optimizer loop) dominates. Here ``K`` trials
(the *members*) are trained as one computation: their parameters are stacked along a leading member
axis (``torch.func.stack_module_state``), the forward pass is ``torch.func.functional_call`` under
``torch.func.vmap`` over the members' own batches, one backward pass of the summed member losses
gives every member its own gradient (the members share no parameter, so no gradient crosses
between them), and the optimizer update runs on the stacked tensors with per-member hyperparameters
held as tensors.

Each member follows ``nnbench.trial.run``'s protocol exactly and yields the ``TrialResult`` that
``run`` would return for it: the same initialisation (its model is built under its own seed by the
same RNG calls), the same batches (its own ``data.train_stream(batch_size, seed)``; augmentation,
if the data set has any, is applied there with the member's generator), the same evaluation steps
(``nnbench.trial.is_eval_step``), divergence checks at the same steps with the same rule, and the same
measurements. Values agree up to floating-point reassociation (a batched matrix product sums in a
different order than a single one): see ``tests/nnbench/test_ensemble.py`` for the measured
agreement. A trial whose training amplifies rounding (a large lr at the edge of divergence) can
therefore end differently from its lone run, as it could on another machine: in
``benchmarks/bench_nnbench_ensemble.py`` no teacher_fc trial did, a few CNN trials at lr >= 0.2 did. A member leaves the ensemble (its slices are dropped from every stacked tensor) as soon
as it reaches the target, diverges or spends its budget, and its result is handed to ``on_result`` at
once, so a driver stores it before the others finish. A diverging member cannot poison the others:
nothing is reduced across the member axis except the summed loss whose gradient is 1 for every member.

Time measurements (``train_time``, ``wall_time`` and the result's ``wall_time``) are those of the
ensemble, shared by the members trained alongside.

Supported: SGD, heavy-ball momentum, Nesterov, Adam and Adam without momentum (``torch.optim.SGD`` /
``torch.optim.Adam`` as ``nnbench.optim`` builds them, weight decay included), both lr schedules,
models without buffers, dropout or in-place weight projection (``fc``, ``linear``, ``simple_cnn``,
``resnet8``, ``transformer``). Not supported, and run one trial at a time by ``nnbench.study``:
K-FAC (its factor statistics and eigendecompositions are per-layer state outside the stacked
update), models with batch-norm running statistics (``resnet32``, ``vgg11``; also their
channel-normalised convolutions, which project weights in place) and dropout. ``ensemble_supported``
says which case applies and why.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from nnbench.device import resolve_device, synchronize
from nnbench.store import Measurement, Status, TrialResult
from nnbench.trial import (
    CHECK_EVERY,
    DIVERGENCE_FACTOR,
    _build_model,
    _check_loop_args,
    _divergence,
    _eval_measurements,
    _eval_sums,
    _eval_values,
    _is_check_step,
    _reached,
    _seeded,
    _trial_data,
    _trial_hparams,
    _trial_result,
    is_eval_step,
    make_loss,
)
from nnbench.workloads import Workload

__all__ = ["auto_ensemble_size", "ensemble_size", "ensemble_supported", "run_ensemble"]

# Examples evaluated per pass, all members together, in units of the workload's eval_batch_size: larger
# passes amortise the per-call overhead, smaller ones stay in cache (teacher_fc, 32 members, one CPU
# thread: 8 took 1.3-1.7x less time than 1, measured while developing this module).
_EVAL_EXAMPLES_PER_PASS = 8

# (index, hparams, seed) of one member: what nnbench.trial.run takes as index=, hparams=, seed=.
Member = tuple[int, Mapping[str, float], int]


# -- which trials can be batched ------------------------------------------------------------------
def _optimizer_problem(opt: torch.optim.Optimizer) -> str | None:
    """Why the stacked update cannot reproduce ``opt`` (None: it can)."""
    group = opt.param_groups[0]
    if type(opt) is torch.optim.SGD:
        if group["dampening"] != 0 or group["maximize"]:
            return "SGD with dampening or maximize has no batched update"
        return None
    if type(opt) is torch.optim.Adam:
        if group["amsgrad"] or group["maximize"] or group.get("decoupled_weight_decay", False):
            return "Adam with amsgrad, maximize or decoupled weight decay has no batched update"
        return None
    return f"{type(opt).__name__} keeps per-layer state outside a stacked update"


def _model_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained as a batched ensemble (None: it can)."""
    from nnbench.models.layers import ChannelNormConv2d

    for name, module in model.named_modules():
        if isinstance(module, ChannelNormConv2d):
            return f"layer {name!r} projects its weights in place during the forward pass"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"layer {name!r} is dropout (per-member random masks)"
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model keeps buffers ({buffers[0]}, ...: batch-norm statistics) that a batched forward cannot update"
    return None


def _probe(workload: Workload, optimizer: str, data) -> tuple[str | None, nn.Module]:
    """(why trials of ``workload`` with ``optimizer`` cannot form an ensemble or None, the model), from
    a throwaway model built on the CPU; the caller's RNG state is untouched."""
    from nnbench.models import build_model
    from nnbench.optim import build_optimizer

    with torch.random.fork_rng(devices=[]):
        model = build_model(workload.model, data.input_shape, data.num_outputs, **workload.model_kwargs)
        why = _model_problem(model)
        if why is None:
            why = _optimizer_problem(build_optimizer(optimizer, nn.Linear(1, 1), lr=1e-3))
    return why, model


def ensemble_supported(workload: Workload, optimizer: str, data) -> tuple[bool, str]:
    """Whether trials of ``workload`` with ``optimizer`` on ``data`` (the workload's ``DataSource``,
    which fixes the model's input and output shapes) can run as one ensemble.

    Returns:
        ``(True, "")``, or ``(False, reason)`` with a one-line reason (K-FAC, batch norm, dropout, in-place
        weight projection), in which case ``nnbench.study`` runs the trials one at a time.
    """
    why, _ = _probe(workload, optimizer, data)
    return (True, "") if why is None else (False, f"{workload.name} with {optimizer}: {why}")


def auto_ensemble_size(device: str | torch.device, model: nn.Module) -> int:
    """The ensemble size ``auto`` stands for: members of ``model``'s architecture trained at once on
    ``device``.

    CPU: 16 members of a fully connected net (the batched-matmul path), fewer if they would hold more
    than 8M parameters together; 1 for other models, whose vmapped convolutions ran slower as an
    ensemble than one at a time on 2 CPU cores (``benchmarks/bench_nnbench_ensemble.py``). CUDA: up to
    64 members within 64M parameters (a small model leaves a GPU idle; not measured here).
    """
    dev = resolve_device(device)
    num_params = sum(p.numel() for p in model.parameters())
    if dev.type == "cuda":
        return max(1, min(64, 2**26 // max(num_params, 1)))
    if _fc_plan(model) is None:
        return 1
    return max(1, min(16, 2**23 // max(num_params, 1)))


def ensemble_size(workload: Workload, optimizer: str, data, device, requested: int | str) -> tuple[int, str]:
    """How many of a study's trials to train at once: ``(size, reason)``.

    ``requested`` is a positive integer or ``"auto"`` (``auto_ensemble_size`` for ``device`` and the
    model); the size is 1 (one trial at a time) when ``ensemble_supported`` refuses, ``reason`` then
    saying why (else "").
    """
    if requested != "auto" and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise ValueError(f"ensemble must be a positive integer or 'auto', got {requested!r}")
    if requested == 1:
        return 1, ""
    why, model = _probe(workload, optimizer, data)
    if why is not None:
        return 1, f"{workload.name} with {optimizer}: {why}"
    return (auto_ensemble_size(device, model) if requested == "auto" else requested), ""


# -- the stacked optimizer update -------------------------------------------------------------------
def _per_member(values: Sequence[float], dev: torch.device) -> Tensor:
    """Per-member hyperparameters as a float64 vector (float64: the same values torch's optimizers
    compute in Python floats before the cast to the parameters' dtype)."""
    return torch.tensor([float(v) for v in values], dtype=torch.float64, device=dev)


def _bcast(v: Tensor, p: Tensor) -> Tensor:
    """Member vector ``v`` (K,) shaped to broadcast against a stacked tensor ``p`` (K, ...)."""
    return v.view(-1, *([1] * (p.dim() - 1)))


@dataclass
class _StackedUpdate:
    """``torch.optim.SGD`` (dampening 0: v <- m v + g; p <- p - lr v, or p - lr (g + m v) for
    Nesterov) and ``torch.optim.Adam`` (Kingma & Ba 2014, Algorithm 1 with torch's placement of eps)
    on stacked parameters, hyperparameters per member. Read from each member's own torch optimizer, so
    defaults and checks are those of ``nnbench.optim.build_optimizer``."""

    kind: str  # "sgd" or "adam"
    hp: dict[str, Tensor]  # per-member hyperparameters, float64 (K,)
    nesterov: bool = False
    momentum: bool = False  # any member with momentum > 0 (SGD)
    decay: bool = False  # any member with weight decay > 0 (decided on the host: no sync per step)
    state: list[list[Tensor | None]] = field(default_factory=list)  # per parameter, per state slot
    steps: int = 0

    @classmethod
    def from_optimizers(cls, opts: Sequence[torch.optim.Optimizer], dev: torch.device) -> _StackedUpdate:
        groups = [o.param_groups[0] for o in opts]
        decay = any(g["weight_decay"] != 0 for g in groups)
        if type(opts[0]) is torch.optim.SGD:
            # Nesterov is on only where momentum > 0; at momentum 0 both forms are plain SGD.
            return cls("sgd", {k: _per_member([g[k] for g in groups], dev) for k in ("momentum", "weight_decay")},
                       nesterov=any(g["nesterov"] for g in groups), momentum=any(g["momentum"] != 0 for g in groups),
                       decay=decay)
        hp = {"beta1": _per_member([g["betas"][0] for g in groups], dev),
              "beta2": _per_member([g["betas"][1] for g in groups], dev),
              **{k: _per_member([g[k] for g in groups], dev) for k in ("eps", "weight_decay")}}
        return cls("adam", hp, decay=decay)

    def keep(self, rows: Tensor) -> None:
        """Keep only the members at positions ``rows``."""
        self.hp = {k: v[rows] for k, v in self.hp.items()}
        self.state = [[None if s is None else s[rows] for s in slots] for slots in self.state]

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor], lr: Tensor) -> None:
        """One update of every stacked parameter; ``lr`` (K,) float64 is this step's learning rate."""
        self.steps += 1
        if not self.state:
            self.state = [[None, None] for _ in params]
        dtype = params[0].dtype
        hp = {k: v.to(dtype) for k, v in self.hp.items()}
        hp.update({f"1-{k}": (1 - v).to(dtype) for k, v in self.hp.items() if k.startswith("beta")})
        if self.kind == "sgd":
            neg_lr = (-lr).to(dtype)
            for p, g, slots in zip(params, grads, self.state, strict=True):
                if self.decay:
                    g = g + _bcast(hp["weight_decay"], p) * p
                if self.momentum:
                    m = _bcast(hp["momentum"], p)
                    if slots[0] is None:
                        slots[0] = g.clone()  # torch: the first buffer is the gradient itself
                    else:
                        slots[0].mul_(m).add_(g)
                    g = g + m * slots[0] if self.nesterov else slots[0]
                p.addcmul_(g, _bcast(neg_lr, p))
            return
        # Adam; the bias corrections in float64 like torch's Python floats, then cast.
        beta1, beta2 = self.hp["beta1"], self.hp["beta2"]
        neg_step_size = (-lr / (1 - beta1**self.steps)).to(dtype)
        correction2_sqrt = (1 - beta2**self.steps).sqrt().to(dtype)
        for p, g, slots in zip(params, grads, self.state, strict=True):
            if self.decay:
                g = g + _bcast(hp["weight_decay"], p) * p
            if slots[0] is None:
                slots[0], slots[1] = torch.zeros_like(p), torch.zeros_like(p)
            exp_avg, exp_avg_sq = slots
            exp_avg.lerp_(g, _bcast(hp["1-beta1"], p))
            exp_avg_sq.mul_(_bcast(hp["beta2"], p)).addcmul_(g, g * _bcast(hp["1-beta2"], p))
            denom = (exp_avg_sq.sqrt() / _bcast(correction2_sqrt, p)).add_(_bcast(hp["eps"], p))
            p.addcmul_(exp_avg / denom, _bcast(neg_step_size, p))


def _stacked_lr(schedules: Sequence, dev: torch.device) -> Callable[[int], Tensor]:
    """The members' lr schedules as one function t -> (K,) float64 on ``dev`` (no host round trip per
    step): ``ConstantSchedule`` and ``LinearDecaySchedule`` of ``nnbench.optim.schedules``, same formula
    and same float64 arithmetic."""
    from nnbench.optim.schedules import ConstantSchedule, LinearDecaySchedule

    lr = _per_member([s.lr for s in schedules], dev)
    if all(type(s) is ConstantSchedule for s in schedules):
        return lambda t: lr
    if not all(type(s) is LinearDecaySchedule for s in schedules):
        raise ValueError(f"no batched form of the schedules {sorted({type(s).__name__ for s in schedules})}")
    steps = _per_member([s.decay_steps for s in schedules], dev)
    drop = 1.0 - _per_member([s.decay_factor for s in schedules], dev)
    return lambda t: lr * (1.0 - drop * (steps.clamp(max=t) / steps))


# -- the batched forward pass ---------------------------------------------------------------------
def _fc_plan(model: nn.Module) -> list[tuple[str, str, float]] | None:
    """``model`` as a list of (op, parameter prefix, input scale) when it is a ``nn.Sequential`` of
    Flatten / Linear / NTKLinear / ReLU (the ``fc`` and ``linear`` models), else None."""
    from nnbench.models.layers import NTKLinear

    if not isinstance(model, nn.Sequential):
        return None
    plan = []
    for name, module in model.named_children():
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            plan.append(("flatten", name, 1.0))
        elif isinstance(module, nn.Linear):
            plan.append(("linear", f"{name}.", 1.0))
        elif isinstance(module, NTKLinear):
            plan.append(("linear", f"{name}.linear.", module.scale))
        elif type(module) is nn.ReLU:
            plan.append(("relu", name, 1.0))
        else:
            return None
    return plan


class _BatchedForward:
    """Outputs (K, N, ...) of K stacked models on per-member inputs (K, N, ...) or on one input (N, ...)
    shared by all members. Fully connected ReLU nets run as batched matrix products (``baddbmm``, the
    member axis as the batch axis; teacher_fc, 32 members, one CPU thread: 190-230 us of CPU per member
    step against 220-400 us under ``vmap``, and half the evaluation time, measured while developing this
    module); any other model as ``functional_call`` under ``vmap``."""

    def __init__(self, model: nn.Module):
        self.plan = _fc_plan(model)
        self.base = copy.deepcopy(model).to("meta")  # the architecture; the weights are passed in
        self._vmapped = {shared: vmap(self._member, in_dims=(0, None if shared else 0)) for shared in (False, True)}

    def _member(self, params: dict, x: Tensor) -> Tensor:
        return functional_call(self.base, params, (x,))

    def __call__(self, params: Mapping[str, Tensor], x: Tensor, *, shared: bool = False) -> Tensor:
        if self.plan is None:
            return self._vmapped[shared](dict(params), x)
        k = next(iter(params.values())).shape[0]
        h = x.expand(k, *x.shape) if shared else x  # a view: no copy of the shared input
        for op, prefix, scale in self.plan:
            if op == "flatten":
                h = h.flatten(2)
            elif op == "relu":
                h = h.relu_()  # in place: baddbmm's backward needs its inputs, not its output
            else:  # F.linear(h * scale, W, b) per member, the order of ops of nn.Linear / NTKLinear
                if scale != 1.0:
                    h = h * scale
                w_t = params[prefix + "weight"].transpose(1, 2)  # (K, in, out)
                bias = params.get(prefix + "bias")
                h = torch.bmm(h, w_t) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, w_t)
        return h


# -- the ensemble ---------------------------------------------------------------------------------
@dataclass
class _Member:
    """Host-side record of one member while it trains (what ``trial._loop`` keeps in locals)."""

    index: int
    hparams: dict
    seed: int
    schedule: Callable[[int], float]
    measurements: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    initial_loss: float | None = None
    total_at_check: float = 0.0
    total_at_eval: float = 0.0


def run_ensemble(
    workload: Workload,
    *,
    optimizer: str,
    batch_size: int,
    members: Sequence[Member],
    device: str | torch.device = "auto",
    data=None,
    data_dir: str | None = None,
    on_result: Callable[[TrialResult], None] | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    check_every: int = CHECK_EVERY,
    progress: bool = False,
) -> list[TrialResult]:
    """Train ``members`` (each ``(index, hparams, seed)``) of a study as one batched ensemble.

    Args:
        workload, optimizer, batch_size, device, data, data_dir, divergence_factor, check_every: as for
            ``nnbench.trial.run``.
        members: per member the trial index, its hyperparameters and its seed (distinct indices).
        on_result: called with each member's ``TrialResult`` as soon as that member finishes.
        progress: a tqdm bar over the ensemble's steps.

    Returns:
        The members' results, in the order of ``members``; each is what ``nnbench.trial.run`` returns for
        that member (module docstring), except the shared times.

    Raises:
        ValueError: bad input (as ``nnbench.trial.run``), duplicate indices, no members, or a workload /
            optimizer that ``ensemble_supported`` refuses.
    """
    from tqdm.auto import tqdm

    from nnbench.optim import build_optimizer

    dev = resolve_device(device)
    _check_loop_args(batch_size, check_every, divergence_factor)
    members = list(members)
    if not members:
        raise ValueError("members: give at least one (index, hparams, seed)")
    indices = [int(m[0]) for m in members]
    if len(set(indices)) != len(indices):
        raise ValueError(f"members: duplicate trial indices in {indices}")
    start = time.perf_counter()
    data = _trial_data(workload, data, dev, data_dir)
    ok, why = ensemble_supported(workload, optimizer, data)
    if not ok:
        raise ValueError(f"no ensemble for {why}; run these trials one at a time (nnbench.trial.run)")
    loss_fn = make_loss(workload, data.task)
    eval_x, eval_y = data.eval_data(workload.eval_split)

    records, models, opts, streams = [], [], [], []
    for index, hparams, seed in members:
        hparams, schedule, opt_hparams = _trial_hparams(workload, optimizer, hparams)
        with _seeded(seed, dev):  # the RNG calls of trial.run: same seed, same initialisation
            model = _build_model(workload, data, dev)
            opts.append(build_optimizer(optimizer, model, **opt_hparams))
        models.append(model)
        streams.append(data.train_stream(batch_size, seed))
        records.append(_Member(int(index), hparams, int(seed), schedule))
    params, _ = stack_module_state(models)  # {name: (K, ...) leaf}, no buffers (ensemble_supported)
    names = list(params)
    stacked = [params[n] for n in names]
    update = _StackedUpdate.from_optimizers(opts, dev)
    lr_at = _stacked_lr([r.schedule for r in records], dev)
    forward = _BatchedForward(models[0])
    del models, opts, params
    # the workload's loss and evaluation sums per member, over outputs (K, N, ...)
    batched_loss = vmap(loss_fn)
    batched_eval = vmap(lambda out, y: _eval_sums(out, y, data.task), in_dims=(0, None))

    results: dict[int, TrialResult] = {}
    loss_total = torch.zeros(len(records), dtype=torch.float64, device=dev)  # per member, as trial._loop
    last_eval = last_check = step = 0
    train_time = 0.0
    bar = tqdm(total=workload.max_steps, desc=f"ensemble of {len(records)}", unit="step", leave=False,
               disable=not progress)

    def finish(k: int, status: Status, steps_to_result=None, error=None, loss=None) -> None:
        r = records[k]
        if loss is not None:
            r.measurements.append(Measurement(step, "train_loss", loss))
        result = _trial_result(
            workload, index=r.index, status=status, hparams=r.hparams, steps_to_result=steps_to_result,
            steps_run=step, evals=r.evals, wall_time=time.perf_counter() - start, device=dev, seed=r.seed,
            error=error, measurements=r.measurements,
        )
        results[r.index] = result
        if on_result is not None:
            on_result(result)

    def keep_unfinished() -> None:
        nonlocal records, streams, stacked, loss_total, lr_at
        keep = [k for k, r in enumerate(records) if r.index not in results]
        if len(keep) == len(records):
            return
        rows = torch.tensor(keep, dtype=torch.long, device=dev)
        records = [records[k] for k in keep]
        streams = [streams[k] for k in keep]
        stacked = [p.detach()[rows].requires_grad_() for p in stacked]
        loss_total = loss_total[rows]
        update.keep(rows)
        if records:
            lr_at = _stacked_lr([r.schedule for r in records], dev)

    def evaluate_all(lr_step: int) -> None:
        """Evaluate every member on the shared evaluation set (passes of _EVAL_EXAMPLES_PER_PASS
        evaluation batches, all members together), record the measurements, finish those at the target."""
        chunk = max(1, -(-_EVAL_EXAMPLES_PER_PASS * workload.eval_batch_size // len(records)))
        loss_sum = torch.zeros(len(records), dtype=torch.float64, device=dev)
        correct = torch.zeros_like(loss_sum)
        count = 0
        weights = dict(zip(names, stacked, strict=True))
        with torch.no_grad():
            for i in range(0, eval_x.shape[0], chunk):
                yb = eval_y[i : i + chunk]
                batch_loss, batch_correct = batched_eval(forward(weights, eval_x[i : i + chunk], shared=True), yb)
                loss_sum += batch_loss
                correct += batch_correct
                count += yb.numel()
        wall = time.perf_counter() - start
        sums = torch.stack([loss_sum, correct], dim=1).tolist()  # one host read (a sync on a GPU)
        for k, (s, c) in enumerate(sums):
            r = records[k]
            values = _eval_values(s, c, count, workload.metric)
            train_loss = (r.total_at_check - r.total_at_eval) / (step - last_eval) if step > last_eval else None
            r.measurements.extend(_eval_measurements(workload, step, train_loss, values, r.schedule(lr_step),
                                                     train_time, wall))
            r.total_at_eval = r.total_at_check
            r.evals.append(values[workload.metric])
            if _reached(values[workload.metric], workload.target, workload.direction):
                finish(k, Status.COMPLETE, step)

    try:
        evaluate_all(0)
        keep_unfinished()
        t0 = time.perf_counter()
        for step in range(1, workload.max_steps + 1):
            if not records:
                break
            lr = lr_at(step - 1)  # the schedule counts the updates taken so far
            batches = [next(s) for s in streams]
            x = torch.stack([b[0] for b in batches])
            y = torch.stack([b[1] for b in batches])
            losses = batched_loss(forward(dict(zip(names, stacked, strict=True)), x), y)  # (K,)
            # The summed loss has gradient 1 for each member: every member gets its own gradient, and
            # a non-finite member's loss reaches no other member's parameters.
            grads = torch.autograd.grad(losses.sum(), stacked)
            update.step(stacked, grads, lr)
            loss_total += losses.detach()
            eval_now = is_eval_step(workload, step)
            if _is_check_step(step, last_check, check_every, eval_now):
                totals = loss_total.tolist()  # the host read (a sync on a GPU) of this check window
                for k, r in enumerate(records):
                    mean = (totals[k] - r.total_at_check) / (step - last_check)
                    if r.initial_loss is None:
                        r.initial_loss = mean  # the loss at initialisation (step 1), the yardstick
                    why = _divergence(mean, r.initial_loss, divergence_factor, last_check + 1, step)
                    if why is not None:
                        finish(k, Status.INFEASIBLE, error=why, loss=mean)
                    else:
                        r.total_at_check = totals[k]
                last_check = step
                keep_unfinished()
            if eval_now and records:
                synchronize(dev)
                train_time += time.perf_counter() - t0
                bar.update(step - bar.n)
                evaluate_all(step - 1)
                last_eval = step
                keep_unfinished()
                t0 = time.perf_counter()
        for k in range(len(records)):
            finish(k, Status.INCOMPLETE)
    finally:
        bar.close()
    return [results[i] for i in indices]
