"""Engines: where a sweep's trials run.

The seam between a sweep and the machines it runs on. A sweep turns the trials its studies lack into
:class:`TrialTask` objects (deterministic: trial ``i`` of a study is always the same quasi-random point
with the same seed, wherever it runs), splits each study's tasks into *groups* and hands the groups to
an engine:

* ``local`` (:class:`nnbench.engines.local.LocalEngine`, the default): every group in this process,
  one after another;
* ``ray`` (:class:`nnbench.engines.ray.RayEngine`): groups as Ray tasks on a local Ray instance or a
  cluster (needs the optional ``ray`` package: ``pip install "nqm-bench[cluster]"``).

An engine runs a group with :func:`run_group` in whatever process it chooses and reports every task's
outcome (a ``TrialResult``, or a ``TrialFailure`` saying why there is none) to the caller's
``on_result(task, outcome)``, in the caller's thread. The caller (the sweep's driver) is the only
writer of the store, one transaction per outcome. Every engine keeps this contract:

* ``on_result`` is called exactly once per task, in the thread that called ``run``;
* an exception raised by a trial is that trial's outcome (a ``TrialFailure``), never the sweep's;
* on an exception in the caller (``KeyboardInterrupt``, or one raised by ``on_result``) the engine
  stops the tasks it has started and re-raises: outcomes already reported are all that is kept.

Importing this package imports neither torch nor ray.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nnbench.store import TrialFailure, TrialResult
from nnbench.workloads import Workload, build_workload_data

__all__ = [
    "ENGINES",
    "DataCache",
    "Engine",
    "OnResult",
    "Outcome",
    "TrialOptions",
    "TrialTask",
    "groups_of",
    "make_engine",
    "run_group",
]

# engine name -> "module:class"; modules are imported on use (the ray engine's needs ray).
ENGINES = {"local": "nnbench.engines.local:LocalEngine", "ray": "nnbench.engines.ray:RayEngine"}

Outcome = TrialResult | TrialFailure


@dataclass(frozen=True)
class TrialOptions:
    """How every trial of a sweep runs, beyond its point and seed (``nnbench.trial.run``'s options).

    Attributes:
        instruments: callables ``f(model, loss_fn, (x, y)) -> {name: value}`` (picklable, for
            engines that run trials in other processes).
        instrument_every: steps between instrument calls (required with instruments).
    """

    instruments: tuple = ()
    instrument_every: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "instruments", tuple(self.instruments))


@dataclass(frozen=True)
class TrialTask:
    """One trial to run: everything ``nnbench.trial.run`` needs, and where its outcome is stored.

    Attributes:
        workload: the workload.
        optimizer: a name of ``nnbench.optim.OPTIMIZERS``.
        batch_size: examples per step.
        study_id: the stored study the trial belongs to.
        index: the trial index in its study.
        hparams: the study's quasi-random point ``index``.
        seed: ``nnbench.trial.trial_seed(study seed, index)``.
        options: instruments and their cadence.
    """

    workload: Workload
    optimizer: str
    batch_size: int
    study_id: int
    index: int
    hparams: Mapping[str, float]
    seed: int
    options: TrialOptions = field(default_factory=TrialOptions)

    def __post_init__(self):
        # a plain dict: picklable, for engines that ship tasks to other processes
        object.__setattr__(self, "hparams", {k: float(v) for k, v in self.hparams.items()})


OnResult = Callable[[TrialTask, Outcome], None]


class Engine(Protocol):
    """Runs groups of trials somewhere and reports every task's outcome (see the module docstring).

    Attributes:
        in_process: True when the groups run in the calling process (which then passes the data set
            it built to ``run``).
    """

    in_process: bool

    def worker_device(self, device: str) -> str:
        """The device the trials will use for the sweep's ``device`` (ValueError if unusable)."""

    def run(
        self,
        groups: Sequence[Sequence[TrialTask]],
        *,
        device: str,
        data_dir: str | None,
        on_result: OnResult,
        data=None,
    ) -> None:
        """Run every group; ``device`` is as for ``nnbench.device.resolve_device``, ``data_dir`` the
        local data of real data sets (as seen by the processes that run the trials), ``data`` the
        workload's data set already built by an in-process caller (None: build it)."""


def make_engine(name: str, **options) -> Engine:
    """The engine called ``name`` (a key of ``ENGINES``), built with ``options``."""
    from importlib import import_module

    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    module, cls = ENGINES[name].split(":")
    return getattr(import_module(module), cls)(**options)


def groups_of(tasks: Sequence[TrialTask], size: int) -> list[list[TrialTask]]:
    """``tasks`` (of one study, in order) cut into consecutive groups of ``size`` (the last may be
    shorter)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"group_size must be a positive integer, got {size!r}")
    tasks = list(tasks)
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


def _check_group(tasks: Sequence[TrialTask]) -> None:
    first = tasks[0] if tasks else None
    for t in tasks[1:]:
        if (t.study_id, t.optimizer, t.batch_size) != (first.study_id, first.optimizer, first.batch_size):
            raise ValueError("a group holds tasks of one study only")
    indices = [t.index for t in tasks]
    if len(set(indices)) != len(indices):
        raise ValueError(f"a group holds each trial index once, got {indices}")


def run_group(tasks: Sequence[TrialTask], *, data, device, on_result: OnResult, progress: bool = False,
              threads: int = 1) -> None:
    """Run ``tasks`` (trials of one study) in this process, calling ``on_result(task, outcome)`` as
    each outcome is known.

    One task runs with ``nnbench.trial.run``; several run as one batched ensemble
    (``nnbench.ensemble.run_ensemble``; the sweep groups trials only where the study supports it),
    each member reported as it finishes. A trial that raises (for an ensemble: the ensemble) has a
    ``TrialFailure`` (the exception and its traceback) as the outcome of every task not yet reported,
    and the group goes on; an exception raised by ``on_result`` itself stops the group.

    Args:
        tasks: tasks of one study, each index once (none: nothing to do).
        data: the workload's ``DataSource`` on ``device`` (built once per process: :class:`DataCache`).
        device: a ``torch.device``.
        on_result: receives each task with its ``TrialResult`` or ``TrialFailure``.
        progress: a bar over each trial's (ensemble's) steps (for a terminal attached to this process).
        threads: CPU threads an ensemble trains on (``run_ensemble``'s ``threads``); a lone trial uses
            the process's torch threads.
    """
    from nnbench import trial  # looked up per call, so the trial function can be replaced in tests

    tasks = list(tasks)
    _check_group(tasks)
    if len(tasks) > 1:
        _run_ensemble(tasks, data=data, device=device, on_result=on_result, progress=progress, threads=threads)
        return
    for task in tasks:
        try:
            outcome = trial.run(
                task.workload,
                optimizer=task.optimizer,
                hparams=task.hparams,
                batch_size=task.batch_size,
                seed=task.seed,
                index=task.index,
                device=device,
                data=data,
                instruments=task.options.instruments,
                instrument_every=task.options.instrument_every,
                progress=progress,
            )
        except Exception:
            outcome = TrialFailure(index=task.index, error=traceback.format_exc())
        on_result(task, outcome)


def _run_ensemble(tasks: list[TrialTask], *, data, device, on_result: OnResult, progress: bool,
                  threads: int) -> None:
    """``tasks`` as one ensemble; members are reported as they finish, the rest fail together if the
    ensemble raises."""
    from nnbench.ensemble import run_ensemble

    first = tasks[0]
    if first.options.instruments:
        raise ValueError("trials with instruments run one at a time, not as an ensemble")
    by_index = {t.index: t for t in tasks}
    reported, caller_error = set(), []

    def member_done(result: TrialResult) -> None:
        reported.add(result.index)
        try:
            on_result(by_index[result.index], result)
        except BaseException as e:
            caller_error.append(e)
            raise

    try:
        run_ensemble(first.workload, optimizer=first.optimizer, batch_size=first.batch_size,
                     members=[(t.index, t.hparams, t.seed) for t in tasks], device=device, data=data,
                     on_result=member_done, progress=progress, threads=threads)
    except Exception:
        if caller_error:
            raise
        error = traceback.format_exc()
        for t in tasks:
            if t.index not in reported:
                on_result(t, TrialFailure(index=t.index, error=error))


class DataCache:
    """The data set of the last workload asked for, built on first use and kept (one per process that
    runs trials: a data set is built once per process, not once per trial)."""

    def __init__(self):
        self._key = None
        self._data = None

    def get(self, workload: Workload, *, device, data_dir: str | None):
        """``build_workload_data(workload, device=device, data_dir=data_dir)``, reused while the data
        set (name and arguments), the device and ``data_dir`` stay the same."""
        key = (workload.dataset, json.dumps(workload.dataset_kwargs, sort_keys=True, default=repr), str(device),
               data_dir)
        if key != self._key:
            self._key = self._data = None  # let the old data set go before building the new one
            self._data = build_workload_data(workload, device=device, data_dir=data_dir)
            self._key = key
        return self._data
