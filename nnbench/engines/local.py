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
    """

    progress: bool = False
    in_process: bool = field(default=True, init=False)

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
            run_group(group, data=here, device=dev, on_result=on_result, progress=self.progress)
