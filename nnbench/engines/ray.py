"""The Ray engine: groups of trials as Ray tasks, on a local Ray instance or a Ray cluster.

Each group is one Ray task asking for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a group
runs one trial at a time, or one batched ensemble; fractional GPUs let several small trials share one GPU; Ray points ``CUDA_VISIBLE_DEVICES`` of the
task at the GPU it was given). Ray reuses its worker processes across tasks, and each worker builds the
workload's data set once (a per-process :class:`~nnbench.engines.DataCache`), not once per trial. At
most ``max_in_flight`` groups are submitted at a time (``ray.wait`` backpressure), so a sweep of
thousands of trials holds a bounded amount of driver and scheduler state.

Failures (Ray's task fault tolerance): a trial that raises is reported as a ``TrialFailure`` by the
worker itself (never retried: it would raise again). A worker process or node that dies costs only
the groups it was running; Ray resubmits each up to ``max_retries`` times, after which its trials are
reported as failures with Ray's reason. Failures are not finished trials: the next run of the sweep
tries them again. On an exception in the driver (Ctrl-C) the groups in flight are cancelled (their
workers killed) before it propagates; a Ray instance this engine started is shut down.

Ray is imported only when a sweep runs on this engine (``pip install "nqm-bench[cluster]"``); every
process of the cluster needs the same nnbench, torch and ray installed.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from nnbench.engines import DataCache, OnResult, TrialTask, run_group
from nnbench.store import TrialFailure

__all__ = ["RayEngine", "run_group_task"]

# The data set of a Ray worker process: kept across the tasks Ray runs in that process (this is the
# point of it), never shared between processes.
_WORKER_DATA = DataCache()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(
            'the ray engine needs the ray package: pip install "nqm-bench[cluster]" (or ray==2.60.0)'
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a HOST:PORT where nothing listens now (``ray.init`` would retry for minutes, deaf to Ctrl-C)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ValueError(f"address {address!r}: no Ray head answers there ({e}); start one with "
                         "`ray start --head` and pass the address it prints") from None


def _positive_int_or_none(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class RayEngine:
    """Trials as Ray tasks (see the module docstring).

    Attributes:
        address: a running cluster: ``"auto"`` (the one this machine belongs to) or ``"HOST:PORT"`` of
            its head; None starts a Ray instance on this machine for the sweep. A Ray this process has
            already initialised (a notebook, a test) is used as it is, whatever ``address`` says.
        num_cpus: CPUs of a Ray instance started here (None: all of this machine's).
        cpus_per_trial: CPUs Ray reserves per trial.
        gpus_per_trial: GPUs Ray reserves per trial (0.25: four trials share a GPU); > 0 puts the
            trials on CUDA.
        threads: torch CPU threads in each trial (None: ``floor(cpus_per_trial)``, at least 1).
        max_retries: times Ray resubmits a group whose worker died before its trials are failures.
        max_in_flight: groups submitted at once (None: twice the number of trials the cluster fits
            at the same time, so a worker that finishes finds the next group already queued).
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    threads: int | None = None
    max_retries: int = 3
    max_in_flight: int | None = None
    in_process: bool = field(default=False, init=False)

    def __post_init__(self):
        if self.address is not None and not (
            isinstance(self.address, str) and re.fullmatch(r"auto|[^\s:]+:\d+|\w+://\S+", self.address)
        ):
            raise ValueError(f"address must be 'auto' or HOST:PORT, got {self.address!r}")
        _positive_int_or_none("num_cpus", self.num_cpus)
        if self.num_cpus is not None and self.address is not None:
            raise ValueError("num_cpus sizes a Ray instance started here; a cluster's CPUs are set by "
                             "`ray start --num-cpus` on its nodes (drop num_cpus or address)")
        for name, low in (("cpus_per_trial", 0.0), ("gpus_per_trial", 0.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
                raise ValueError(f"{name} must be a finite number >= {low:g}, got {v!r}")
        if self.cpus_per_trial == 0 and self.gpus_per_trial == 0:
            raise ValueError("cpus_per_trial and gpus_per_trial are both 0: a trial must reserve something")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError(f"gpus_per_trial above 1 must be a whole number (Ray's rule), got {self.gpus_per_trial!r}")
        _positive_int_or_none("threads", self.threads)
        _positive_int_or_none("max_in_flight", self.max_in_flight)
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {self.max_retries!r}")

    # -- the engine ------------------------------------------------------------------------------
    def run(self, groups: Sequence[Sequence[TrialTask]], *, device: str = "auto", data_dir: str | None = None,
            on_result: OnResult, data=None) -> None:
        """Run every group as a Ray task (see ``nnbench.engines.Engine``); ``data`` is not used: each
        worker process builds its own."""
        groups = [g for g in map(list, groups) if g]
        device = self.worker_device(device)
        if not groups:
            return  # nothing missing: no Ray to start
        ray = _import_ray()
        started = self._connect(ray)
        try:
            self._run(ray, groups, device, data_dir, on_result)
        finally:
            if started:
                ray.shutdown()

    def worker_device(self, device: str) -> str:
        """The device the trials use on the workers: ``"cuda"`` (the GPU Ray assigned) when GPUs are
        reserved, else ``"cpu"``; ``device`` may say the same or ``"auto"``."""
        name = str(device).strip().lower()
        want = "cuda" if self.gpus_per_trial > 0 else "cpu"
        if name in ("auto", want):
            return want
        if name.startswith("cuda:"):
            raise ValueError(f"device {device!r}: with the ray engine Ray picks each trial's GPU; use 'cuda'")
        if name == "cuda":
            raise ValueError("device 'cuda' with the ray engine needs gpus_per_trial > 0 (--gpus-per-trial)")
        if name == "cpu":
            raise ValueError("device 'cpu' with gpus_per_trial > 0: drop --gpus-per-trial or use --device cuda")
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")

    def _connect(self, ray) -> bool:
        """Connect to (or start) Ray; True if this call started it (and so must shut it down)."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network at run time
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, **quiet)
            return True
        _check_reachable(self.address)
        try:
            ray.init(address=self.address, **quiet)
        except (ConnectionError, ValueError) as e:
            raise ValueError(f"address {self.address!r}: cannot connect to a Ray cluster ({e})") from None
        return True

    def _slots(self, ray) -> int:
        """How many trials the cluster runs at once; refuses requests no node can meet."""
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        fits = 0
        for name, want in (("CPU", self.cpus_per_trial), ("GPU", self.gpus_per_trial)):
            if want == 0:
                continue
            largest = max((r.get(name, 0.0) for r in nodes), default=0.0)
            if largest < want:
                flag = "--cpus-per-trial" if name == "CPU" else "--gpus-per-trial"
                raise ValueError(f"{flag} {want:g}: no node of the Ray cluster has that many {name}s "
                                 f"(largest: {largest:g})")
            n = sum(math.floor(r.get(name, 0.0) / want + 1e-9) for r in nodes)
            fits = n if fits == 0 else min(fits, n)
        return max(1, fits)

    def _run(self, ray, groups, device, data_dir, on_result) -> None:
        limit = self.max_in_flight or 2 * self._slots(ray)
        threads = self.threads or max(1, math.floor(self.cpus_per_trial))
        # A group runs one trial at a time (or one batched ensemble): one trial's resources per task.
        remote = ray.remote(run_group_task).options(
            num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, max_retries=self.max_retries,
            retry_exceptions=False)
        todo, pending = deque(groups), {}
        try:
            while todo or pending:
                while todo and len(pending) < limit:
                    group = todo.popleft()
                    ref = remote.remote(group, device, data_dir, threads)
                    pending[ref] = group
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    group = pending.pop(ref)
                    for task, outcome in zip(group, self._outcomes(ray, ref, group), strict=True):
                        on_result(task, outcome)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def _outcomes(self, ray, ref, group: list[TrialTask]) -> list:
        """The outcomes of a finished Ray task, in the group's order; failures if it has none."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            # run_group_task itself raised (the data set could not be built on the worker, say)
            why = f"the worker could not run this group: {e}"
        except ray.exceptions.RayError as e:
            why = (f"{type(e).__name__}: the worker running this trial was lost and Ray's "
                   f"{self.max_retries} retries were used up ({e})")
        return [TrialFailure(index=t.index, error=why) for t in group]


def run_group_task(tasks: list[TrialTask], device: str, data_dir: str | None, threads: int) -> list:
    """Body of the Ray task: run a group in this worker process and return its outcomes in order."""
    import torch

    from nnbench.device import resolve_device

    torch.set_num_threads(threads)  # the process is Ray's worker: its thread pool is ours to size
    dev = resolve_device(device)
    data = _WORKER_DATA.get(tasks[0].workload, device=dev, data_dir=data_dir)
    outcomes = {}
    run_group(tasks, data=data, device=dev, on_result=lambda task, outcome: outcomes.__setitem__(task.index, outcome),
              threads=threads)
    return [outcomes[t.index] for t in tasks]
