"""Studies and sweeps: quasi-random search per (optimizer, batch size), steps to result, resuming.

A *study* is (workload, optimizer, batch size, search space, budget, target) (Shallue et al. 2018,
section 3; Zhang et al. 2019, section 4): trial ``i`` runs the ``i``-th point of a seeded quasi-random
search with seed ``trial_seed(seed, i)``. Its *steps to result* is the fewest steps to the target over
its COMPLETE trials (Shallue et al.: "the best trial ... reached the goal in the fewest steps"). A
*sweep* runs one study per (optimizer, batch size) of a workload.

Each finished trial is stored at once (``nnbench.store``), so a sweep that is killed resumes by
running only the trial indices its studies lack; asking for more trials extends a study (points
0..n-1 never change); a best trial within 5% of a search-space boundary (in the scaled range) is
flagged, since the optimum may then lie outside the space (Zhang et al. section 4).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nnbench.search import QuasiRandomSearch, SearchSpace, edge_report
from nnbench.store import Status, Store, StudyRecord, TrialResult
from nnbench.workloads import Workload

__all__ = [
    "EDGE_TOL",
    "StudySpec",
    "StudySummary",
    "best_trial",
    "summarize",
    "summarize_store",
    "run_study",
    "run_trials",
    "run_sweep",
    "format_table",
]

# A best trial this close to a boundary (fraction of the scaled range) is flagged.
EDGE_TOL = 0.05


@dataclass(frozen=True)
class StudySpec:
    """A study's definition (its identity in the store) plus its trial budget.

    Attributes:
        workload: the workload (its whole definition is part of the study's identity).
        optimizer: a name of ``nnbench.optim.OPTIMIZERS``.
        batch_size: examples per step.
        search_space: the space searched (default: ``workload.search_space(optimizer)``).
        max_trials: trial indices 0..max_trials-1 are run (not part of the identity: a study can be
            extended).
        seed: seeds the quasi-random search and the trials.
    """

    workload: Workload
    optimizer: str
    batch_size: int
    search_space: SearchSpace
    max_trials: int
    seed: int = 0

    def __post_init__(self):
        for name in ("batch_size", "max_trials", "seed"):
            v = getattr(self, name)
            low = 1 if name == "batch_size" else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if not isinstance(self.search_space, SearchSpace):
            raise ValueError(f"search_space must be a SearchSpace, got {type(self.search_space).__name__}")

    def definition(self) -> dict:
        """The study's identity: same definition -> same stored study (resumed, extended)."""
        w = self.workload
        return {
            "workload": w.name,
            "optimizer": self.optimizer,
            "batch_size": self.batch_size,
            "metric": w.metric,
            "target": float(w.target),
            "direction": w.direction,
            "max_steps": w.max_steps,
            "seed": self.seed,
            "search_space": self.search_space.to_dict(),
            "workload_definition": w.definition(),
        }


@dataclass(frozen=True)
class StudySummary:
    """Where a study stands.

    Attributes:
        study_id, workload, optimizer, batch_size, metric, target, direction, max_steps, max_trials:
            from the study's definition.
        counts: trials stored per status (COMPLETE / INCOMPLETE / INFEASIBLE).
        steps_to_result: fewest steps to the target over COMPLETE trials (None: none reached it).
        best_index, best_hparams: the trial achieving it (lowest index on ties).
        edges: searched hyperparameters of the best trial at a boundary, ``{name: "low"|"high"}``.
    """

    study_id: int
    workload: str
    optimizer: str
    batch_size: int
    metric: str
    target: float
    direction: str
    max_steps: int
    max_trials: int
    counts: Mapping[str, int]
    steps_to_result: int | None
    best_index: int | None
    best_hparams: Mapping[str, float] | None
    edges: Mapping[str, str] = field(default_factory=dict)

    @property
    def trials_done(self) -> int:
        return sum(self.counts.values())


def best_trial(trials: Iterable[TrialResult]) -> TrialResult | None:
    """The COMPLETE trial with the fewest steps to result (lowest index on ties), or None."""
    complete = [t for t in trials if Status(t.status) is Status.COMPLETE]
    if not complete:
        return None
    return min(complete, key=lambda t: (t.steps_to_result, t.index))


def summarize(store: Store, study: StudyRecord | int, *, tol: float = EDGE_TOL) -> StudySummary:
    """The :class:`StudySummary` of a stored study (by record or id)."""
    if isinstance(study, int):
        study = store.study(study)
    trials = store.trials(study.id)
    counts = {s.value: 0 for s in Status}
    for t in trials:
        counts[t.status.value] += 1
    best = best_trial(trials)
    edges = {}
    if best is not None:
        edges = edge_report(SearchSpace.from_dict(study.search_space), best.hparams, tol)
    return StudySummary(
        study_id=study.id,
        workload=study.workload,
        optimizer=study.optimizer,
        batch_size=study.batch_size,
        metric=study.metric,
        target=study.target,
        direction=study.direction,
        max_steps=study.max_steps,
        max_trials=study.max_trials,
        counts=counts,
        steps_to_result=None if best is None else best.steps_to_result,
        best_index=None if best is None else best.index,
        best_hparams=None if best is None else dict(best.hparams),
        edges=edges,
    )


def summarize_store(path: str | os.PathLike, *, tol: float = EDGE_TOL) -> list[StudySummary]:
    """Summaries of every study in the store at ``path`` (FileNotFoundError if it does not exist)."""
    with Store(path, create=False) as store:
        return [summarize(store, s, tol=tol) for s in store.studies()]


def run_study(
    spec: StudySpec,
    store: Store,
    *,
    data,
    device,
    bar=None,
    progress: bool = False,
    instruments: Sequence = (),
    instrument_every: int | None = None,
    ensemble: int | str = 1,
) -> StudySummary:
    """Run the trials of ``spec`` that ``store`` lacks, storing each as it finishes.

    Args:
        spec: the study.
        store: an open :class:`Store`.
        data: the workload's ``DataSource`` (built once per sweep), on ``device``.
        device: a ``torch.device``.
        bar: an outer tqdm bar advanced once per trial (or None).
        progress: show a per-trial (per-ensemble) bar over steps.
        instruments, instrument_every: passed to every trial (``nnbench.trial.run``); trials with
            instruments run one at a time.
        ensemble: trials trained at once as one batched ensemble (``nnbench.ensemble``): a positive
            integer or ``"auto"``; 1 runs them one at a time, as does a workload / optimizer that
            ``nnbench.ensemble.ensemble_supported`` refuses (a warning says why when a size > 1 was asked
            for explicitly).
    """
    from nnbench.ensemble import ensemble_size

    record = store.ensure_study(spec.definition(), spec.max_trials)
    done = store.finished_indices(record.id)
    missing = [i for i in range(spec.max_trials) if i not in done]
    size = 1
    if missing and not instruments:
        size, why = ensemble_size(spec.workload, spec.optimizer, data, device, ensemble)
        if why and ensemble != "auto":
            warnings.warn(f"{why}: its trials run one at a time", stacklevel=2)

    def store_result(result: TrialResult) -> None:
        store.write_trial(record.id, result)
        if bar is not None:
            bar.update(1)
            steps = "-" if result.steps_to_result is None else result.steps_to_result
            bar.set_postfix_str(f"{spec.optimizer} B={spec.batch_size} #{result.index}: {result.status.value} {steps}")

    for start in range(0, len(missing), size):
        run_trials(spec, missing[start : start + size], store_result, data=data, device=device, progress=progress,
                   instruments=instruments, instrument_every=instrument_every)
    return summarize(store, record)


def run_trials(
    spec: StudySpec,
    indices: Sequence[int],
    on_result,
    *,
    data,
    device,
    progress: bool = False,
    instruments: Sequence = (),
    instrument_every: int | None = None,
) -> None:
    """Run trials ``indices`` of ``spec``, calling ``on_result(result)`` as each finishes: several
    indices without instruments as one batched ensemble (``nnbench.ensemble.run_ensemble``; the caller
    checked that the study supports it), else one at a time (``nnbench.trial.run``)."""
    import nnbench.trial
    from nnbench.ensemble import run_ensemble
    from nnbench.trial import trial_seed

    search = QuasiRandomSearch(spec.search_space, spec.seed)
    common = {"optimizer": spec.optimizer, "batch_size": spec.batch_size, "device": device, "data": data,
              "progress": progress}
    if len(indices) > 1 and not instruments:
        members = [(i, search.point(i), trial_seed(spec.seed, i)) for i in indices]
        run_ensemble(spec.workload, members=members, on_result=on_result, **common)
        return
    for index in indices:
        on_result(nnbench.trial.run(
            spec.workload, hparams=search.point(index), seed=trial_seed(spec.seed, index), index=index,
            instruments=instruments, instrument_every=instrument_every, **common,
        ))


def run_sweep(
    workload: Workload | str,
    optimizers: Sequence[str],
    batch_sizes: Sequence[int],
    trials_per_study: int,
    store_path: str | os.PathLike,
    *,
    device="auto",
    quick: bool = False,
    progress: bool = True,
    seed: int = 0,
    data_dir: str | None = None,
    search_spaces: Mapping[str, SearchSpace] | None = None,
    instruments: Sequence = (),
    instrument_every: int | None = None,
    ensemble: int | str = 1,
) -> list[StudySummary]:
    """Run (or resume, or extend) one study per (optimizer, batch size) of ``workload``.

    Args:
        workload: a :class:`Workload` or a name of ``WORKLOADS``.
        optimizers: optimizer names (``nnbench.optim.OPTIMIZERS``).
        batch_sizes: batch sizes (positive integers).
        trials_per_study: quasi-random trials per study (indices 0..n-1; finished ones are skipped).
        store_path: the SQLite file (created if missing).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        quick: use the workload's ``--quick`` variant.
        progress: tqdm bars (one over the sweep's trials, one over each trial's steps).
        seed: seeds the searches and trials of every study.
        data_dir: local data of real data sets.
        search_spaces: per optimizer, a search space replacing the workload's default.
        instruments, instrument_every: passed to every trial.
        ensemble: trials of a study trained at once as one batched ensemble: a positive integer, or
            ``"auto"`` (chosen by device and model size); 1 runs them one at a time (see ``run_study``).

    Returns:
        One :class:`StudySummary` per (optimizer, batch size), in the order given.
    """
    from tqdm.auto import tqdm

    from nnbench.device import resolve_device
    from nnbench.optim import OPTIMIZERS
    from nnbench.workloads import build_workload_data, get_workload

    if isinstance(workload, str):
        workload = get_workload(workload)
    if quick:
        workload = workload.quick()
    optimizers = list(optimizers)
    batch_sizes = list(batch_sizes)
    if not optimizers:
        raise ValueError("optimizers: give at least one optimizer name")
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizers: unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if not batch_sizes:
        raise ValueError("batch_sizes: give at least one batch size")
    for b in batch_sizes:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"batch_sizes must be positive integers, got {b!r}")
    if isinstance(trials_per_study, bool) or not isinstance(trials_per_study, int) or trials_per_study < 1:
        raise ValueError(f"trials_per_study must be a positive integer, got {trials_per_study!r}")
    if ensemble != "auto" and (isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1):
        raise ValueError(f"ensemble must be a positive integer or 'auto', got {ensemble!r}")
    search_spaces = dict(search_spaces or {})
    specs = [
        StudySpec(
            workload=workload,
            optimizer=opt,
            batch_size=b,
            search_space=search_spaces.get(opt) or workload.search_space(opt),
            max_trials=trials_per_study,
            seed=seed,
        )
        for opt in optimizers
        for b in batch_sizes
    ]
    dev = resolve_device(device)
    with Store(store_path) as store:
        # Count the missing trials first, so the bar's total is right on a resumed sweep.
        missing = 0
        for spec in specs:
            record = store.ensure_study(spec.definition(), spec.max_trials)
            missing += len(set(range(spec.max_trials)) - store.finished_indices(record.id))
        data = build_workload_data(workload, device=dev, data_dir=data_dir) if missing else None
        summaries = []
        with tqdm(total=missing, desc=f"{workload.name} trials", unit="trial", disable=not progress) as bar:
            for spec in specs:
                summaries.append(
                    run_study(spec, store, data=data, device=dev, bar=bar, progress=progress,
                              instruments=instruments, instrument_every=instrument_every, ensemble=ensemble)
                )
    return summaries


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def format_table(summaries: Sequence[StudySummary]) -> str:
    """A plain-text table: per study the trials by status, steps to result, best hyperparameters and
    edge flags (``!lr=high``: the best lr is at the top of its range)."""
    header = ["workload", "optimizer", "batch", "trials C/I/X", "steps_to_result", "best hparams", "edge"]
    rows = [header]
    for s in summaries:
        c = s.counts
        trials = f"{c.get('COMPLETE', 0)}/{c.get('INCOMPLETE', 0)}/{c.get('INFEASIBLE', 0)} of {s.max_trials}"
        best = "-" if s.best_hparams is None else " ".join(f"{k}={_fmt(v)}" for k, v in s.best_hparams.items())
        edges = " ".join(f"!{k}={side}" for k, side in s.edges.items()) or ""
        steps = "-" if s.steps_to_result is None else str(s.steps_to_result)
        rows.append([s.workload, s.optimizer, str(s.batch_size), trials, steps, best, edges])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
