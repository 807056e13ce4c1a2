"""One trial: train a fresh model with fixed hyperparameters until the target metric is first reached.

Protocol (Shallue et al. 2018, section 3.2; Zhang et al. 2019, section 4): the model is evaluated on
the workload's evaluation split at step 0 and every ``eval_every`` training steps (or on a geometric
grid of bounded relative granularity: ``is_eval_step``); the first evaluation
at which the metric reaches the target gives the trial's *steps to result* (status COMPLETE). A trial
that spends ``max_steps`` without reaching it is INCOMPLETE; one whose training loss becomes
non-finite or explodes (mean over a check window above ``divergence_factor`` times the loss at
initialisation) is INFEASIBLE and stops at once ("we discarded trials with a divergent training
loss", Zhang et al. section 4).

Speed: data is resident on the device and batches are sliced there (``DataSource.train_stream``); the
loop never calls ``.item()`` per step: the training loss is summed on the device and read every
``check_every`` steps (divergence check) and at evaluations; the evaluation runs in batches under
``torch.no_grad`` with one host read per evaluation.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnbench.device import resolve_device, synchronize
from nnbench.store import Measurement, Status, TrialResult
from nnbench.workloads import Workload, build_workload_data

__all__ = [
    "run", "evaluate", "is_eval_step", "geometric_grid", "make_loss", "trial_seed", "Instrument", "DIVERGENCE_FACTOR", "CHECK_EVERY",
    "GEOMETRIC_FROM",
]

# Training loss above this multiple of the loss at initialisation counts as divergence. Loss spikes
# of a healthy run stay within a few times the initial loss; a diverging run overshoots by orders of
# magnitude within a few steps (or turns non-finite).
DIVERGENCE_FACTOR = 20.0
# Steps between host reads of the summed training loss (divergence check): one sync per window.
CHECK_EVERY = 20
# The geometric evaluation grid evaluates every step up to here (where a 3% step is under one step).
GEOMETRIC_FROM = 32

# instrument(model, loss_fn, (x, y)) -> {name: value}; values are stored as measurements.
Instrument = Callable[[nn.Module, Callable[[Tensor, Tensor], Tensor], tuple[Tensor, Tensor]], Mapping[str, float]]

_SCHEDULE_HPARAMS = ("decay_steps", "decay_factor")


def trial_seed(study_seed: int, index: int) -> int:
    """The seed of trial ``index`` of a study seeded ``study_seed`` (63-bit, from numpy SeedSequence):
    model initialisation and batch order; independent of the search point."""
    import numpy as np

    return int(np.random.SeedSequence([int(study_seed), int(index), 0x7E1A1]).generate_state(1, np.uint64)[0]) >> 1


def make_loss(
    workload: Workload, task: str, *, label_smoothing: float | None = None
) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss ``loss_fn(output, y) -> scalar`` of ``workload`` on a data set of ``task``.

    Cross entropy is the mean over examples (classification) or tokens (language models, output
    (N, T, V)); mse the mean over examples and outputs.
    """
    smoothing = workload.label_smoothing if label_smoothing is None else label_smoothing
    if workload.loss == "mse":
        if task != "regression":
            raise ValueError(f"workload {workload.name!r}: loss 'mse' needs a regression data set, got task {task!r}")

        def mse(out: Tensor, y: Tensor) -> Tensor:
            return F.mse_loss(out, y.reshape(out.shape))

        return mse
    if task == "regression":
        raise ValueError(f"workload {workload.name!r}: loss 'cross_entropy' needs classification data, got regression")

    def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), label_smoothing=smoothing)

    return cross_entropy


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, *, task: str, metric: str, batch_size: int = 1024
) -> dict[str, float]:
    """``{"<metric>": value, "loss": value}`` of ``model`` on ``(x, y)``, in batches of ``batch_size``.

    accuracy: fraction of examples (tokens, for language models) whose argmax is the label;
    cross_entropy: mean negative log-likelihood in nats (no label smoothing); mse: mean squared error.
    ``loss`` is cross entropy for classification / language models and mse for regression. The model
    is put in eval mode and restored to train mode.
    """
    if metric == "accuracy" and task == "regression":
        raise ValueError("metric 'accuracy' needs classification data, got a regression data set")
    if metric in ("cross_entropy",) and task == "regression":
        raise ValueError("metric 'cross_entropy' needs classification data, got a regression data set")
    if metric == "mse" and task != "regression":
        raise ValueError(f"metric 'mse' needs a regression data set, got task {task!r}")
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    count = 0
    try:
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            batch_loss, batch_correct = _eval_sums(model(xb), yb, task)
            loss_sum += batch_loss
            correct += batch_correct
            count += yb.numel()
    finally:
        model.train(was_training)
    # one host read (and the sync it implies) per evaluation
    return _eval_values(float(loss_sum), float(correct), count, metric)


def _eval_values(loss_sum: float, correct: float, count: int, metric: str) -> dict[str, float]:
    """``{"<metric>": value, "loss": value}`` from the sums over ``count`` examples (or tokens)."""
    loss = loss_sum / count
    if metric == "accuracy":
        return {"accuracy": correct / count, "loss": loss}
    return {metric: loss, "loss": loss}


def _eval_sums(out: Tensor, y: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """(summed loss, correctly predicted examples or tokens) of one evaluation batch: model output
    ``out`` against targets ``y``, as float64 scalars (mse for regression, which has no correct count)."""
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()  # sums of many half-precision terms lose digits
    if task == "regression":
        loss = F.mse_loss(out, y.reshape(out.shape).to(out.dtype), reduction="sum").double()
        return loss, torch.zeros_like(loss)
    logits = out.reshape(-1, out.shape[-1])  # (N or N*T, C)
    labels = y.reshape(-1)
    # classes second, (1, C, N): torch's log-softmax over a short last axis is ~6x slower on the CPU
    loss = F.cross_entropy(logits.T.unsqueeze(0), labels.unsqueeze(0), reduction="sum").double()
    return loss, (logits.argmax(dim=1) == labels).sum().double()


def _reached(value: float, target: float, direction: str) -> bool:
    return math.isfinite(value) and (value >= target if direction == "max" else value <= target)


# -- pieces shared with the ensemble runner (nnbench.ensemble): one definition of the protocol ------
def is_eval_step(workload: Workload, step: int) -> bool:
    """Whether a trial of ``workload`` evaluates after ``step`` training steps.

    Always at the last step of the budget. With ``workload.eval_grid == "every"``: at step 0 and every
    ``eval_every`` steps. With ``"geometric"`` (relative step ``r = workload.eval_rel_step``): every
    step up to ``GEOMETRIC_FROM`` (32), then the steps ``n_0 = 32``, ``n_{j+1} = floor(n_j (1 + r)) + 1``
    (:func:`geometric_grid`). Consecutive evaluations thus satisfy ``n_{j+1} - 1 <= n_j (1 + r)``: a
    first crossing of the target at step ``s`` in ``(n_j, n_{j+1}]`` is reported as
    ``n_{j+1} < s (1 + r)``, within a factor ``1 + r`` at every batch size; and ``n_j >= 32 (1 + r)^j``,
    so a budget of ``N`` steps has at most ``34 + log(N / 32) / log(1 + r)`` evaluations (211 for
    N = 6,000, r = 3%: 196 in fact).
    """
    if step == workload.max_steps:
        return True
    if workload.eval_grid == "every":
        return step % workload.eval_every == 0
    return step <= GEOMETRIC_FROM or step in geometric_grid(workload.eval_rel_step, workload.max_steps)


@functools.lru_cache(maxsize=64)
def geometric_grid(rel: float, max_steps: int) -> frozenset[int]:
    """The evaluation steps above ``GEOMETRIC_FROM`` of the geometric grid with relative step ``rel``
    up to ``max_steps`` (:func:`is_eval_step`); computed once per (rel, max_steps)."""
    steps, n = [], GEOMETRIC_FROM
    while n <= max_steps:
        steps.append(n)
        n = math.floor(n * (1 + rel)) + 1
    return frozenset(steps)


def _is_check_step(step: int, last_check: int, check_every: int, eval_now: bool) -> bool:
    """Whether the training loss is read (divergence check) after ``step``: at step 1 (the loss at
    initialisation), ``check_every`` steps after the last check, and at every evaluation."""
    return step == 1 or step - last_check >= check_every or eval_now


def _check_loop_args(batch_size, check_every, divergence_factor) -> None:
    for name, value in (("batch_size", batch_size), ("check_every", check_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(divergence_factor, (int, float)) and divergence_factor > 1 and math.isfinite(divergence_factor)):
        raise ValueError(f"divergence_factor must be a finite number > 1, got {divergence_factor!r}")


def _trial_hparams(workload: Workload, optimizer: str, hparams: Mapping[str, float]):
    """Checked ``(hparams, schedule, optimizer hparams)`` of a trial (the schedule's are split off)."""
    from nnbench.optim import build_schedule, optimizer_hparams

    hparams = dict(hparams)
    if "lr" not in hparams:
        raise ValueError("hparams must contain lr")
    allowed = set(optimizer_hparams(optimizer))
    if workload.schedule == "linear_decay":
        allowed |= set(_SCHEDULE_HPARAMS)
    unknown = sorted(set(hparams) - allowed)
    if unknown:
        raise ValueError(
            f"hparams {unknown} are not used by optimizer {optimizer!r} with schedule {workload.schedule!r}"
        )
    sched_kwargs = {}
    if workload.schedule == "linear_decay":
        missing = [k for k in _SCHEDULE_HPARAMS if k not in hparams]
        if missing:
            raise ValueError(f"workload {workload.name!r} uses linear_decay: hparams need {missing}")
        sched_kwargs = {"decay_steps": max(1, round(hparams["decay_steps"])), "decay_factor": hparams["decay_factor"]}
    schedule = build_schedule(workload.schedule, lr=hparams["lr"], **sched_kwargs)
    opt_hparams = {k: v for k, v in hparams.items() if k not in _SCHEDULE_HPARAMS}
    return hparams, schedule, opt_hparams


def _trial_data(workload: Workload, data, dev: torch.device, data_dir: str | None):
    """``data`` on ``dev`` (built when None), checked to hold the workload's evaluation split."""
    if data is None:
        data = build_workload_data(workload, device=dev, data_dir=data_dir)
    elif data.device != dev:
        data = data.to(dev)
    if workload.eval_split not in getattr(data, "splits", (workload.eval_split,)):
        raise ValueError(f"workload {workload.name!r}: data set has no split {workload.eval_split!r}")
    return data


@contextmanager
def _seeded(seed: int, dev: torch.device):
    """A private RNG scope seeded by ``seed``: a trial's initialisation depends on its seed only, and
    the caller's global torch RNG state is left as it was."""
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed % 2**63)
        yield


def _build_model(workload: Workload, data, dev: torch.device) -> nn.Module:
    """The workload's model for ``data``, on ``dev``, in train mode (initialised from the global RNG)."""
    from nnbench.models import build_model

    model = build_model(workload.model, data.input_shape, data.num_outputs, **workload.model_kwargs)
    return model.to(dev).train()


def _divergence(mean: float, initial_loss: float, divergence_factor: float, first: int, last: int) -> str | None:
    """Why the mean training loss ``mean`` over steps ``first..last`` marks a trial INFEASIBLE, or None."""
    if not math.isfinite(mean):
        return f"non-finite training loss in steps {first}..{last}"
    if mean > divergence_factor * max(initial_loss, 1e-12):
        return (f"training loss exploded: mean {mean:.4g} over steps {first}..{last} > "
                f"{divergence_factor:g} x initial loss {initial_loss:.4g}")
    return None


def _eval_measurements(workload: Workload, step: int, train_loss: float | None, values: Mapping[str, float],
                       lr: float, train_time: float, wall_time: float) -> list[Measurement]:
    """The measurements of the evaluation after ``step`` steps (``train_loss``: mean since the last
    evaluation, None at the first)."""
    split, metric = workload.eval_split, workload.metric
    out = [] if train_loss is None else [Measurement(step, "train_loss", train_loss)]
    out.append(Measurement(step, f"{split}_{metric}", values[metric]))
    if metric == "accuracy":  # otherwise the metric is the loss itself
        out.append(Measurement(step, f"{split}_loss", values["loss"]))
    out += [Measurement(step, "lr", lr), Measurement(step, "train_time", train_time),
            Measurement(step, "wall_time", wall_time)]
    return out


def _trial_result(workload: Workload, *, index, status, hparams, steps_to_result, steps_run, evals, wall_time,
                  device, seed, error, measurements) -> TrialResult:
    finals = [v for v in evals if math.isfinite(v)]
    best = None
    if finals:
        best = max(finals) if workload.direction == "max" else min(finals)
    return TrialResult(
        index=int(index),
        status=status,
        hparams={k: float(v) for k, v in hparams.items()},
        steps_to_result=steps_to_result,
        steps_run=steps_run,
        final_metric=evals[-1] if evals and math.isfinite(evals[-1]) else None,
        best_metric=best,
        wall_time=wall_time,
        device=str(device),
        seed=int(seed),
        error=error,
        measurements=tuple(measurements),
    )


def run(
    workload: Workload,
    *,
    optimizer: str,
    hparams: Mapping[str, float],
    batch_size: int,
    seed: int,
    index: int = 0,
    device: str | torch.device = "auto",
    data=None,
    data_dir: str | None = None,
    instruments: Iterable[Instrument] = (),
    instrument_every: int | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    check_every: int = CHECK_EVERY,
    progress: bool = False,
) -> TrialResult:
    """Run one trial of ``workload`` with ``optimizer`` at ``hparams`` and ``batch_size``.

    Args:
        workload: the workload (data, model, loss, metric, target, eval_every, max_steps, schedule).
        optimizer: a name of ``nnbench.optim.OPTIMIZERS``.
        hparams: ``lr`` and the optimizer's other hyperparameters, plus ``decay_steps`` /
            ``decay_factor`` when the workload uses the linear-decay schedule.
        batch_size: examples per training step.
        seed: model initialisation and batch order (``trial_seed(study_seed, index)`` in a study).
        index: the trial index stored in the result.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (see ``nnbench.device.resolve_device``).
        data: a prebuilt ``DataSource`` for this workload (moved to ``device``); built when None.
        data_dir: local data for real data sets when ``data`` is None.
        instruments: callables ``f(model, loss_fn, (x, y)) -> {name: value}``, called at step 0 and
            every ``instrument_every`` steps with the parameters before that step's update and the
            batch of that step; their values are stored as measurements.
        divergence_factor: mean training loss over a check window above this multiple of the loss at
            initialisation marks the trial INFEASIBLE (as does any non-finite loss).
        check_every: steps between divergence checks (each is one host read).
        progress: show a tqdm bar over the steps of this trial.

    Returns:
        A ``TrialResult``. Measurements at every evaluation step: ``train_loss`` (mean since the last
        evaluation), ``<split>_<metric>``, ``<split>_loss``, ``lr``, ``train_time`` (seconds spent in
        training steps so far, evaluation excluded) and ``wall_time`` (seconds since the start).
    """
    from nnbench.optim import build_optimizer

    dev = resolve_device(device)
    _check_loop_args(batch_size, check_every, divergence_factor)
    if instrument_every is not None and (
        isinstance(instrument_every, bool) or not isinstance(instrument_every, int) or instrument_every < 1
    ):
        raise ValueError(f"instrument_every must be a positive integer or None, got {instrument_every!r}")
    instruments = list(instruments)
    if instruments and instrument_every is None:
        raise ValueError("instruments given without instrument_every")
    hparams, schedule, opt_hparams = _trial_hparams(workload, optimizer, hparams)

    start = time.perf_counter()
    data = _trial_data(workload, data, dev, data_dir)
    loss_fn = make_loss(workload, data.task)
    eval_x, eval_y = data.eval_data(workload.eval_split)

    with _seeded(seed, dev):
        model = _build_model(workload, data, dev)
        opt = build_optimizer(optimizer, model, **opt_hparams)
        stream = data.train_stream(batch_size, seed)
        result = _loop(
            workload, model, opt, schedule, loss_fn, stream, (eval_x, eval_y), data.task, dev,
            instruments, instrument_every, float(divergence_factor), check_every, progress, start,
        )
    status, steps_to_result, steps_run, evals, error, measurements = result
    return _trial_result(
        workload, index=index, status=status, hparams=hparams, steps_to_result=steps_to_result,
        steps_run=steps_run, evals=evals, wall_time=time.perf_counter() - start, device=dev, seed=seed,
        error=error, measurements=measurements,
    )

def _loop(workload, model, opt, schedule, loss_fn, stream, eval_set, task, dev, instruments,
          instrument_every, divergence_factor, check_every, progress, start):
    """The training loop; returns (status, steps_to_result, steps_run, eval metrics, error, measurements)."""
    from tqdm.auto import tqdm

    metric = workload.metric
    measurements: list[Measurement] = []
    evals: list[float] = []
    train_time = 0.0
    # Running sum of training losses on the device (float64: no drift over long trials); the host reads
    # it at divergence checks and evaluations and differences the reads for window / interval means.
    loss_total = torch.zeros((), dtype=torch.float64, device=dev)
    total_at_check = total_at_eval = 0.0
    last_eval = last_check = 0
    initial_loss = None
    step = 0
    bar = tqdm(total=workload.max_steps, desc="steps", unit="step", leave=False, disable=not progress)

    def record_eval(lr: float) -> bool:
        nonlocal total_at_eval, last_eval
        values = evaluate(model, *eval_set, task=task, metric=metric, batch_size=workload.eval_batch_size)
        # an evaluation step is always a check step: total_at_check is current
        train_loss = (total_at_check - total_at_eval) / (step - last_eval) if step > last_eval else None
        measurements.extend(_eval_measurements(workload, step, train_loss, values, lr, train_time,
                                               time.perf_counter() - start))
        total_at_eval = total_at_check
        last_eval = step
        evals.append(values[metric])
        bar.set_postfix({metric: f"{values[metric]:.4g}"}, refresh=False)
        return _reached(values[metric], workload.target, workload.direction)

    def finish(status: Status, steps_to_result=None, error=None, loss=None):
        if loss is not None:
            measurements.append(Measurement(step, "train_loss", loss))
        bar.close()
        return status, steps_to_result, step, evals, error, measurements

    try:
        if record_eval(schedule(0)):
            return finish(Status.COMPLETE, 0)
        t0 = time.perf_counter()
        group_lr = None
        for step in range(1, workload.max_steps + 1):
            lr = schedule(step - 1)  # the schedule counts the updates taken so far
            if lr != group_lr:
                for group in opt.param_groups:
                    group["lr"] = lr
                group_lr = lr
            x, y = next(stream)
            if instruments and (step - 1) % instrument_every == 0:
                synchronize(dev)
                train_time += time.perf_counter() - t0
                for instrument in instruments:
                    for name, value in dict(instrument(model, loss_fn, (x, y))).items():
                        measurements.append(Measurement(step - 1, str(name), float(value)))
                model.train()
                t0 = time.perf_counter()
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_total += loss.detach()
            eval_now = is_eval_step(workload, step)
            if _is_check_step(step, last_check, check_every, eval_now):
                total = float(loss_total)  # the host read (a sync on a GPU) of this check window
                mean = (total - total_at_check) / (step - last_check)
                if initial_loss is None:
                    initial_loss = mean  # the loss at initialisation (step 1), the yardstick
                why = _divergence(mean, initial_loss, divergence_factor, last_check + 1, step)
                if why is not None:
                    return finish(Status.INFEASIBLE, error=why, loss=mean)
                total_at_check, last_check = total, step
            if eval_now:
                synchronize(dev)
                train_time += time.perf_counter() - t0
                bar.update(step - bar.n)
                if record_eval(lr):
                    return finish(Status.COMPLETE, step)
                t0 = time.perf_counter()
    except torch.linalg.LinAlgError as e:
        # A factorisation of NaN/inf statistics (K-FAC's eigendecompositions) is divergence too.
        return finish(Status.INFEASIBLE, error=f"numerical failure at step {step}: {e}", loss=math.nan)
    return finish(Status.INCOMPLETE)
