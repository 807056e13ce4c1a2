"""The local engine: every group of trials in this process, one after another (nnbench's default)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from nnbench.engines import DataCache, OnResult, TrialTask, run_group

__all__ = ["LocalEngine"]


@dataclass(frozen=True)
class LocalEngine:
    """Runs groups in the calling process with the process's torch threads; the data set is the
    caller's, or built once, on the first group.

    Attributes:
        progress: a bar over each trial's steps.
        ensemble_threads: torch CPU threads while a group of several trials trains as one ensemble
            on the CPU (None: the process's setting). One small trial runs fastest on one thread (its
            per-step overhead dominates), an ensemble's batched products use every core: on 2 cores
            a 32-trial teacher_fc ensemble on 2 threads trains 3.2x the trials per hour of one trial at
            a time on 1 thread, and 1.9x on 1 thread (``benchmarks/bench_nnbench_ensemble.py``).
    """

    progress: bool = False
    ensemble_threads: int | None = None
    in_process: bool = field(default=True, init=False)

    def __post_init__(self):
        n = self.ensemble_threads
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"ensemble_threads must be a positive integer or None, got {n!r}")

    def worker_device(self, device: str) -> str:
        """The device the trials use: ``device`` resolved here (``"auto"``: CUDA when available)."""
        from nnbench.device import resolve_device

        return str(resolve_device(device))

    def run(self, groups: Sequence[Sequence[TrialTask]], *, device: str = "auto", data_dir: str | None = None,
            on_result: OnResult, data=None) -> None:
        """Run every group (see ``nnbench.engines.Engine``); ``data``: the groups' data set, if the
        caller built it already."""
        from nnbench.device import resolve_device

        dev = resolve_device(device)
        cache = DataCache()
        for group in filter(None, map(list, groups)):
            here = data if data is not None and data.device == dev else \
                cache.get(group[0].workload, device=dev, data_dir=data_dir)
            threads = self.ensemble_threads if len(group) > 1 and dev.type == "cpu" else None
            with _torch_threads(threads):
                run_group(group, data=here, device=dev, on_result=on_result, progress=self.progress)


@contextmanager
def _torch_threads(n: int | None):
    """Torch's intra-op CPU threads set to ``n`` inside the block (None: unchanged)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
