"""The local engine: every group of trials in this process, one after another (nnbench's default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nnbench.engines import DataCache, OnResult, TrialTask, run_group

__all__ = ["LocalEngine"]


@dataclass(frozen=True)
class LocalEngine:
    """Runs groups in the calling process with the process's torch threads; the data set is built
    once, on the first group.

    Attributes:
        progress: a bar over each trial's steps.
    """

    progress: bool = False

    def run(self, groups: Sequence[Sequence[TrialTask]], *, device: str = "auto", data_dir: str | None = None,
            on_result: OnResult) -> None:
        """Run every group (see ``nnbench.engines.Engine``)."""
        from nnbench.device import resolve_device

        dev = resolve_device(device)
        data = DataCache()
        for group in filter(None, map(list, groups)):
            run_group(group, data=data.get(group[0].workload, device=dev, data_dir=data_dir), device=dev,
                      on_result=on_result, progress=self.progress)
