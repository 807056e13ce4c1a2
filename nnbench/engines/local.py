"""The local engine: every group of trials in this process, one after another (nnbench's default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nnbench.engines import DataCache, OnResult, TrialTask, run_group

__all__ = ["LocalEngine"]


@dataclass(frozen=True)
class LocalEngine:
    """Runs groups in the calling process with the process's torch threads; the data set is the
    caller's, or built once, on the first group.

    Attributes:
        progress: a bar over each trial's steps.
        ensemble_threads: CPU threads a group of several trials trains on as one ensemble
            (``run_ensemble``'s ``threads``: the members split into that many shards, one Python thread
            and one torch thread each; None: the process's torch threads). One small trial runs
            fastest on one thread (its per-step overhead dominates); an ensemble's shards can use every
            core (``benchmarks/bench_nnbench_ensemble.py``; figures in the README).
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
        import torch

        from nnbench.device import resolve_device

        dev = resolve_device(device)
        cache = DataCache()
        for group in filter(None, map(list, groups)):
            here = data if data is not None and data.device == dev else \
                cache.get(group[0].workload, device=dev, data_dir=data_dir)
            run_group(group, data=here, device=dev, on_result=on_result, progress=self.progress,
                      threads=self.ensemble_threads or torch.get_num_threads())
