"""Many trials at once: a group of a study's trials trained together as one batched ensemble.

A study's trials share the workload, the optimizer and the batch size and differ only in their
hyperparameters and seeds. For a small model one trial leaves most of a CPU (and nearly all of a GPU)
idle: per-step overhead (Python, kernel launches, the optimizer loop) dominates. Here ``K`` trials
(the *members*) are trained as one computation: their parameters are stacked along a leading member
axis (``torch.func.stack_module_state``); a fully connected net runs as batched matrix products (the
member axis as the batch axis, ``_MemberLinear``), any other model as ``torch.func.functional_call``
under ``torch.func.vmap`` over the members' own batches; one backward pass of the summed member losses
gives every member its own gradient (the members share no parameter, so no gradient crosses
between them), and the optimizer update runs on the stacked tensors with per-member hyperparameters
held as tensors. On several CPU threads the members are split into shards, one Python thread each
(``run_ensemble``'s ``threads``).

Each member follows ``nnbench.trial.run``'s protocol exactly and yields the ``TrialResult`` that
``run`` would return for it: the same initialisation (its model is built under its own seed by the
same RNG calls), bit for bit the same batches (``data.train_streams``: row ``k`` is the batch of the
member's own ``data.train_stream(batch_size, seed)``, drawn with its own generator; augmentation, if
the data set has any, with the member's generator), the same evaluation steps
(``nnbench.trial.is_eval_step``) on the same evaluation set, divergence checks at the same steps with
the same rule, and the same measurements. Values agree up to floating-point reassociation (a batched
matrix product sums in a different order than a single one): see ``tests/nnbench/test_ensemble.py``
for the measured agreement. A trial whose training amplifies rounding (a large lr at the edge of
divergence) can therefore end differently from its lone run, as it could on another machine: in
``benchmarks/bench_nnbench_ensemble.py`` no teacher_fc trial did, a few CNN trials at lr >= 0.2 did.
A member leaves the ensemble (its slices are dropped from every stacked tensor and from the batch
draws) as soon as it reaches the target, diverges or spends its budget, and its result is handed to
``on_result`` at once, so a driver stores it before the others finish. A diverging member cannot
poison the others: nothing is reduced across the member axis except the summed loss whose gradient
is 1 for every member.

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
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
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

# Examples evaluated per pass of a model under vmap, all members together, in units of the workload's
# eval_batch_size: larger passes amortise the per-call overhead, smaller ones stay in cache (teacher_fc
# under vmap, 32 members, one CPU thread: 8 took 1.3-1.7x less time than 1).
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
    member axis as the batch axis, ``_MemberLinear``; teacher_fc, 32 members, one CPU thread: 190-230 us
    of CPU per member step against 220-400 us under ``vmap``, measured while developing this module);
    any other model as ``functional_call`` under ``vmap``. ``member`` runs one member of a fully
    connected net alone."""

    def __init__(self, model: nn.Module):
        self.plan = _fc_plan(model)
        self.base = copy.deepcopy(model).to("meta")  # the architecture; the weights are passed in
        self._vmapped = {shared: vmap(self._member, in_dims=(0, None if shared else 0)) for shared in (False, True)}

    def _member(self, params: dict, x: Tensor) -> Tensor:
        return functional_call(self.base, params, (x,))

    def member(self, params: Mapping[str, Tensor], k: int, x: Tensor) -> Tensor:
        """Outputs (N, ...) of member ``k`` alone on inputs ``x`` (N, ...), with the operations of
        ``nn.Linear`` / ``NTKLinear``; fully connected nets only (``plan`` not None)."""
        h = x
        for op, prefix, scale in self.plan:
            if op == "flatten":
                h = h.flatten(1)
            elif op == "relu":
                h = h.relu_()
            else:
                if scale != 1.0:
                    h = h * scale
                bias = params.get(prefix + "bias")
                h = F.linear(h, params[prefix + "weight"][k], None if bias is None else bias[k])
        return h

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
                h = _MemberLinear.apply(h, params[prefix + "weight"], params.get(prefix + "bias"))
        return h


class _MemberLinear(torch.autograd.Function):
    """``h @ W^T + b`` per member: (K, N, in), (K, out, in), (K, out) -> (K, N, out), as ``baddbmm``.

    The backward pass is written out to choose the layouts: the weight gradient as ``g^T h`` (autograd
    forms ``(h^T g)^T``, whose narrow product for the last layer, out = 10, took 4x longer: teacher_fc,
    16 members, one thread, torch profiler) and the input gradient ``g W`` contiguous (a transposed
    one made the ReLU's backward 6x slower)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        w_t = weight.transpose(1, 2)  # (K, in, out)
        return torch.bmm(h, w_t) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, w_t)

    @staticmethod
    def backward(ctx, g: Tensor):
        h, weight = ctx.saved_tensors
        grad_h = torch.bmm(g, weight) if ctx.needs_input_grad[0] else None
        return grad_h, torch.bmm(g.transpose(1, 2), h), g.sum(1) if ctx.has_bias else None


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


def _member_losses(workload: Workload, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Each member's training loss ``loss_fn`` (K,) of outputs (K, N, ..., C) and targets (K, N, ...).

    Cross entropy runs with the class axis second (torch's (N, C, d...) form, per example, then the
    mean per member): torch's log-softmax over a short last axis took ~6x longer on the CPU (teacher_fc:
    10 classes). Other losses run as ``loss_fn`` under ``vmap``."""
    if workload.loss != "cross_entropy":
        return vmap(loss_fn)
    smoothing = workload.label_smoothing

    def losses(out: Tensor, y: Tensor) -> Tensor:
        per_example = F.cross_entropy(out.movedim(-1, 1), y, reduction="none", label_smoothing=smoothing)
        return per_example.flatten(1).mean(1)

    return losses


class _Shard:
    """Members trained together on one thread: stacked parameters, their update, their batches, and the
    protocol of ``nnbench.trial._loop`` per member (evaluation and divergence-check steps, statuses)."""

    def __init__(self, workload: Workload, data, batch_size: int, records: list[_Member], models: list[nn.Module],
                 opts: list, dev: torch.device, loss_fn, divergence_factor: float, check_every: int, start: float):
        self.workload, self.data, self.dev = workload, data, dev
        self.records = records
        self.stream = data.train_streams(batch_size, [r.seed for r in records])
        params, _ = stack_module_state(models)  # {name: (K, ...) leaf}, no buffers (ensemble_supported)
        self.names = list(params)
        self.stacked = [params[n] for n in self.names]
        self.update = _StackedUpdate.from_optimizers(opts, dev)
        self.lr_at = _stacked_lr([r.schedule for r in records], dev)
        self.forward = _BatchedForward(models[0])
        self.losses = _member_losses(workload, loss_fn)
        self.eval_x, self.eval_y = data.eval_data(workload.eval_split)
        self.divergence_factor, self.check_every, self.start = divergence_factor, check_every, start
        self.loss_total = torch.zeros(len(records), dtype=torch.float64, device=dev)  # per member, as trial._loop
        self.step = 0
        self.train_time = 0.0
        self.finished: set[int] = set()

    def run(self, emit: Callable[[TrialResult], None], stop: Callable[[], bool], bar) -> None:
        """Train until every member has finished, handing each result to ``emit`` as it is known;
        returns early (members unfinished) once ``stop()`` is true."""
        workload = self.workload
        last_eval = last_check = 0
        self.evaluate(0, emit)
        self.keep_unfinished()
        t0 = time.perf_counter()
        for step in range(1, workload.max_steps + 1):
            if not self.records or stop():
                return
            self.step = step
            lr = self.lr_at(step - 1)  # the schedule counts the updates taken so far
            x, y = next(self.stream)
            losses = self.losses(self.forward(dict(zip(self.names, self.stacked, strict=True)), x), y)  # (K,)
            # The summed loss has gradient 1 for each member: every member gets its own gradient, and
            # a non-finite member's loss reaches no other member's parameters.
            grads = torch.autograd.grad(losses.sum(), self.stacked)
            self.update.step(self.stacked, grads, lr)
            self.loss_total += losses.detach()
            eval_now = is_eval_step(workload, step)
            if _is_check_step(step, last_check, self.check_every, eval_now):
                totals = self.loss_total.tolist()  # the host read (a sync on a GPU) of this check window
                for k, r in enumerate(self.records):
                    mean = (totals[k] - r.total_at_check) / (step - last_check)
                    if r.initial_loss is None:
                        r.initial_loss = mean  # the loss at initialisation (step 1), the yardstick
                    why = _divergence(mean, r.initial_loss, self.divergence_factor, last_check + 1, step)
                    if why is not None:
                        self.finish(k, emit, Status.INFEASIBLE, error=why, loss=mean)
                    else:
                        r.total_at_check = totals[k]
                last_check = step
                self.keep_unfinished()
            if eval_now and self.records:
                synchronize(self.dev)
                self.train_time += time.perf_counter() - t0
                if bar is not None:
                    bar.update(step - bar.n)
                self.evaluate(step - 1, emit, since=last_eval)
                last_eval = step
                self.keep_unfinished()
                t0 = time.perf_counter()
        for k in range(len(self.records)):
            self.finish(k, emit, Status.INCOMPLETE)
        self.records = []

    def finish(self, k: int, emit, status: Status, steps_to_result=None, error=None, loss=None) -> None:
        r = self.records[k]
        if loss is not None:
            r.measurements.append(Measurement(self.step, "train_loss", loss))
        self.finished.add(r.index)
        emit(_trial_result(
            self.workload, index=r.index, status=status, hparams=r.hparams, steps_to_result=steps_to_result,
            steps_run=self.step, evals=r.evals, wall_time=time.perf_counter() - self.start, device=self.dev,
            seed=r.seed, error=error, measurements=r.measurements,
        ))

    def keep_unfinished(self) -> None:
        """Drop the finished members' slices from every stacked tensor and stream."""
        keep = [k for k, r in enumerate(self.records) if r.index not in self.finished]
        if len(keep) == len(self.records):
            return
        rows = torch.tensor(keep, dtype=torch.long, device=self.dev)
        self.records = [self.records[k] for k in keep]
        self.stream.keep(keep)
        self.stacked = [p.detach()[rows].requires_grad_() for p in self.stacked]
        self.loss_total = self.loss_total[rows]
        self.update.keep(rows)
        if self.records:
            self.lr_at = _stacked_lr([r.schedule for r in self.records], self.dev)

    @torch.no_grad()
    def eval_sums(self) -> list[tuple[float, float]]:
        """Per member (summed loss, correct count) on the evaluation set, read in one host read.

        A fully connected net evaluates member by member in passes of ``eval_batch_size`` examples, the
        products of a lone trial (one matrix product per layer over the shared inputs ran faster than
        the batched product over the members); other models run under ``vmap``, all members together."""
        task, x, y = self.data.task, self.eval_x, self.eval_y
        weights = dict(zip(self.names, self.stacked, strict=True))
        k = len(self.records)
        if self.forward.plan is not None:
            n, step, rows = x.shape[0], self.workload.eval_batch_size, []
            for m in range(k):
                passes = [torch.stack(_eval_sums(self.forward.member(weights, m, x[i : i + step]), y[i : i + step], task))
                          for i in range(0, n, step)]
                rows.append(torch.stack(passes).sum(0))
            sums = torch.stack(rows)
        else:
            chunk = max(1, -(-_EVAL_EXAMPLES_PER_PASS * self.workload.eval_batch_size // k))
            batched = vmap(lambda out, yb: _eval_sums(out, yb, task), in_dims=(0, None))
            loss_sum = torch.zeros(k, dtype=torch.float64, device=self.dev)
            correct = torch.zeros_like(loss_sum)
            for i in range(0, x.shape[0], chunk):
                batch_loss, batch_correct = batched(self.forward(weights, x[i : i + chunk], shared=True), y[i : i + chunk])
                loss_sum += batch_loss
                correct += batch_correct
            sums = torch.stack([loss_sum, correct], dim=1)
        return sums.tolist()  # one host read (a sync on a GPU)

    def evaluate(self, lr_step: int, emit, since: int = 0) -> None:
        """Evaluate every member, record the measurements (``since``: the step of the last evaluation),
        finish those at the target."""
        workload, step = self.workload, self.step
        sums = self.eval_sums()
        count = self.eval_y.numel()
        wall = time.perf_counter() - self.start
        for k, (s, c) in enumerate(sums):
            r = self.records[k]
            values = _eval_values(s, c, count, workload.metric)
            train_loss = (r.total_at_check - r.total_at_eval) / (step - since) if step > since else None
            r.measurements.extend(_eval_measurements(workload, step, train_loss, values, r.schedule(lr_step),
                                                     self.train_time, wall))
            r.total_at_eval = r.total_at_check
            r.evals.append(values[workload.metric])
            if _reached(values[workload.metric], workload.target, workload.direction):
                self.finish(k, emit, Status.COMPLETE, step)


def _run_shards(shards: list[_Shard], emit: Callable[[TrialResult], None], bar) -> None:
    """Run ``shards`` at once, one Python thread each, calling ``emit`` in this thread as results
    arrive. An exception in a shard or in ``emit`` stops every shard (at its next step) and is raised
    here once all have stopped."""
    results: queue.SimpleQueue = queue.SimpleQueue()
    stopping = threading.Event()
    done = object()

    def work(shard: _Shard) -> None:
        try:
            shard.run(results.put, stopping.is_set, None)
        except BaseException as e:  # handed to the caller's thread, raised there
            results.put(e)
        finally:
            results.put(done)

    workers = [threading.Thread(target=work, args=(shard,), name=f"ensemble-shard-{i}", daemon=True)
               for i, shard in enumerate(shards)]
    for w in workers:
        w.start()
    error, running = None, len(workers)
    try:
        while running:
            try:
                item = results.get(timeout=0.5)  # the bar moves while no result arrives
            except queue.Empty:
                item = None
            if bar is not None:
                bar.update(max(s.step for s in shards) - bar.n)
            if item is done:
                running -= 1
            elif isinstance(item, BaseException):
                error = error or item
                stopping.set()
            elif item is not None:
                emit(item)
    finally:
        stopping.set()
        for w in workers:
            w.join()
    if error is not None:
        raise error


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
    threads: int = 1,
    progress: bool = False,
) -> list[TrialResult]:
    """Train ``members`` (each ``(index, hparams, seed)``) of a study as one batched ensemble.

    Args:
        workload, optimizer, batch_size, device, data, data_dir, divergence_factor, check_every: as for
            ``nnbench.trial.run``.
        members: per member the trial index, its hyperparameters and its seed (distinct indices).
        on_result: called with each member's ``TrialResult`` as soon as that member finishes, in the
            calling thread.
        threads: CPU threads to train on. With ``threads > 1`` (CPU only) the members are split into
            that many shards (consecutive, at most one per member), each trained as its own ensemble in
            its own Python thread with torch's intra-op threads set to 1 meanwhile: torch's OpenMP
            threads spin at every operation, and on a loaded 2-core machine (load 8) two of them ran a
            training step 12x slower than one, where two shards lose nothing. ``1``: in the calling
            thread, with the caller's torch threads.
        progress: a tqdm bar over the ensemble's steps.

    Returns:
        The members' results, in the order of ``members``; each is what ``nnbench.trial.run`` returns for
        that member (module docstring), except the shared times.

    Raises:
        ValueError: bad input (as ``nnbench.trial.run``), duplicate indices, no members, ``threads`` not
            a positive integer, or a workload / optimizer that ``ensemble_supported`` refuses.
    """
    from tqdm.auto import tqdm

    from nnbench.optim import build_optimizer

    dev = resolve_device(device)
    _check_loop_args(batch_size, check_every, divergence_factor)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
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
    data.eval_data(workload.eval_split)  # built here, before any shard thread reads it

    records, models, opts = [], [], []
    for index, hparams, seed in members:  # in this thread: _seeded sets torch's global RNG
        hparams, schedule, opt_hparams = _trial_hparams(workload, optimizer, hparams)
        with _seeded(seed, dev):  # the RNG calls of trial.run: same seed, same initialisation
            model = _build_model(workload, data, dev)
            opts.append(build_optimizer(optimizer, model, **opt_hparams))
        models.append(model)
        records.append(_Member(int(index), hparams, int(seed), schedule))
    n_shards = min(threads, len(members)) if dev.type == "cpu" else 1
    bounds = [len(members) * i // n_shards for i in range(n_shards + 1)]
    shards = [_Shard(workload, data, batch_size, records[a:b], models[a:b], opts[a:b], dev, loss_fn,
                     float(divergence_factor), check_every, start) for a, b in zip(bounds, bounds[1:], strict=False)]
    del models, opts

    results: dict[int, TrialResult] = {}

    def emit(result: TrialResult) -> None:
        results[result.index] = result
        if on_result is not None:
            on_result(result)

    bar = tqdm(total=workload.max_steps, desc=f"ensemble of {len(members)}", unit="step", leave=False,
               disable=not progress)
    try:
        if n_shards == 1:
            shards[0].run(emit, lambda: False, bar)
        else:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                _run_shards(shards, emit, bar)
            finally:
                torch.set_num_threads(before)
    finally:
        bar.close()
    return [results[i] for i in indices]
