"""Studies and sweeps: quasi-random search per (optimizer, batch size), steps to result, resuming.

A *study* is (workload, optimizer, batch size, search space, budget, target) (Shallue et al. 2018,
section 3; Zhang et al. 2019, section 4): trial ``i`` runs the ``i``-th point of a seeded quasi-random
search with seed ``trial_seed(seed, i)``. Its *steps to result* is the fewest steps to the target over
its COMPLETE trials (Shallue et al.: "the best trial ... reached the goal in the fewest steps"). A
*sweep* runs one study per (optimizer, batch size) of a workload.

The trials a sweep's studies lack become deterministic tasks (``nnbench.engines.TrialTask``) that an
engine runs: in this process (``local``, the default) or on Ray (``ray``). Outcomes come back to this
process, the only writer of the store, and each is stored at once (``nnbench.store``), so a sweep that
is killed resumes by running only the trial indices its studies lack; asking for more trials extends
a study (points 0..n-1 never change). A trial that failed (raised, or lost its worker more often than
the engine retries) is recorded with its error but not finished: the next run tries it again. A best
trial within 5% of a search-space boundary (in the scaled range) is flagged, since the optimum may
then lie outside the space (Zhang et al. section 4).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nnbench.engines import Engine, Outcome, TrialOptions, TrialTask, groups_of
from nnbench.search import QuasiRandomSearch, SearchSpace, edge_report
from nnbench.store import Status, Store, StudyRecord, TrialFailure, TrialResult, study_leases
from nnbench.workloads import Workload

__all__ = [
    "EDGE_TOL",
    "StudySpec",
    "StudySummary",
    "best_trial",
    "summarize",
    "summarize_store",
    "protocol_rounds",
    "study_tasks",
    "run_study",
    "run_sweep",
    "run_specs",
    "sweep_grid",
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
        protocol: the study's place in a measurement protocol (``nnbench.protocol``: its round, parent
            study, widened edges); part of the identity when given.
    """

    workload: Workload
    optimizer: str
    batch_size: int
    search_space: SearchSpace
    max_trials: int
    seed: int = 0
    protocol: Mapping | None = None

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
            **({} if self.protocol is None else {"protocol": dict(self.protocol)}),
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
        failures: trials that failed and are still unfinished, ``{index: latest error}`` (a re-run
            tries them again).
        protocol_round: the study's round in a measurement protocol (``nnbench.protocol``): "search",
            "focus" or "seeds"; None for a study outside one (see :func:`protocol_rounds`).
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
    failures: Mapping[int, str] = field(default_factory=dict)
    protocol_round: str | None = None

    @property
    def trials_done(self) -> int:
        return sum(self.counts.values())


def best_trial(trials: Iterable[TrialResult]) -> TrialResult | None:
    """The COMPLETE trial with the fewest steps to result (lowest index on ties), or None."""
    complete = [t for t in trials if Status(t.status) is Status.COMPLETE]
    if not complete:
        return None
    return min(complete, key=lambda t: (t.steps_to_result, t.index))


def protocol_rounds(records: Sequence[StudyRecord]) -> dict[int, str | None]:
    """Study id -> its measurement-protocol round among ``records``: the round its definition records
    ("focus", "seeds"), "search" for an untagged study that a focused or seeds study of ``records``
    names as its parent or source (round 1 is an ordinary sweep study), None otherwise."""
    tags = {r.id: r.definition.get("protocol") or {} for r in records}
    parents = {t.get("parent") for t in tags.values()} | {(t.get("source") or {}).get("study")
                                                          for t in tags.values()}
    return {r.id: tags[r.id].get("round") or ("search" if r.key in parents else None) for r in records}


def summarize(store: Store, study: StudyRecord | int, *, tol: float = EDGE_TOL,
              protocol_round: str | None = None) -> StudySummary:
    """The :class:`StudySummary` of a stored study (by record or id); ``protocol_round`` overrides the
    round its definition records (a round-1 study records none: :func:`protocol_rounds` finds it)."""
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
    finished = {t.index for t in trials}
    failures = {f.index: f.error for f in store.failures(study.id) if f.index not in finished}
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
        failures=dict(sorted(failures.items())),
        protocol_round=protocol_round or (study.definition.get("protocol") or {}).get("round"),
    )


def summarize_store(path: str | os.PathLike, *, tol: float = EDGE_TOL) -> list[StudySummary]:
    """Summaries of every study in the store at ``path`` (FileNotFoundError if it does not exist)."""
    with Store(path, create=False) as store:
        records = store.studies()
        rounds = protocol_rounds(records)
        return [summarize(store, s, tol=tol, protocol_round=rounds[s.id]) for s in records]


def study_tasks(spec: StudySpec, study_id: int, indices: Iterable[int],
                options: TrialOptions | None = None) -> list[TrialTask]:
    """The trials ``indices`` of ``spec`` (stored as study ``study_id``) as engine tasks: trial ``i``
    runs point ``i`` of the study's quasi-random search with seed ``trial_seed(spec.seed, i)``."""
    from nnbench.trial import trial_seed

    options = options or TrialOptions()
    search = QuasiRandomSearch(spec.search_space, spec.seed)
    return [
        TrialTask(workload=spec.workload, optimizer=spec.optimizer, batch_size=spec.batch_size,
                  study_id=study_id, index=i, hparams=search.point(i), seed=trial_seed(spec.seed, i),
                  options=options)
        for i in indices
    ]


def _plan(specs: Sequence[StudySpec], store: Store, options: TrialOptions,
          sizes: Sequence[int]) -> tuple[list[StudyRecord], list[list[TrialTask]]]:
    """The stored study of each spec (created or extended) and the groups of trials they lack: groups
    of ``sizes[k]`` consecutive missing trials of ``specs[k]`` (an ensemble each when the size is > 1)."""
    records, groups = [], []
    for spec, size in zip(specs, sizes, strict=True):
        record = store.ensure_study(spec.definition(), spec.max_trials)
        records.append(record)
        done = store.finished_indices(record.id)
        missing = [i for i in range(spec.max_trials) if i not in done]
        groups += groups_of(study_tasks(spec, record.id, missing, options), size)
    return records, groups


def _execute(records: Sequence[StudyRecord], groups: list[list[TrialTask]], store: Store, *, engine: Engine,
             device, data_dir, data=None, bar=None, on_study=None) -> list[StudySummary]:
    """Hand ``groups`` to ``engine`` in one go (so it can run studies side by side) and store each
    outcome as it arrives, in this process and thread; ``on_study(summary)`` as a study's last missing
    trial is stored; the summaries of ``records`` afterwards."""
    remaining = Counter(task.study_id for group in groups for task in group)
    by_id = {record.id: record for record in records}

    def on_result(task: TrialTask, outcome: Outcome) -> None:
        if isinstance(outcome, TrialFailure):
            store.write_failure(task.study_id, outcome)
            what = "FAILED"
        else:
            store.write_trial(task.study_id, outcome)
            steps = "-" if outcome.steps_to_result is None else outcome.steps_to_result
            what = f"{outcome.status.value} {steps}"
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{task.optimizer} B={task.batch_size} #{task.index}: {what}")
        remaining[task.study_id] -= 1
        if on_study is not None and remaining[task.study_id] == 0:
            on_study(summarize(store, by_id[task.study_id]))

    if groups:
        engine.run(groups, device=device, data_dir=data_dir, on_result=on_result, data=data)
    return [summarize(store, record) for record in records]


def _ensemble_sizes(specs: Sequence[StudySpec], ensemble: int | str, *, data, device,
                    instrumented: bool) -> list[int]:
    """Per study, the trials trained at once (``nnbench.ensemble.ensemble_size``; 1 with instruments,
    which run on one model at a time). A refusal of an explicitly asked size is a warning."""
    if ensemble == 1 or instrumented or data is None:
        return [1] * len(specs)
    from nnbench.ensemble import ensemble_size

    sizes = []
    for spec in specs:
        size, why = ensemble_size(spec.workload, spec.optimizer, data, device, ensemble)
        if why and ensemble != "auto":
            warnings.warn(f"{why}: its trials run one at a time", stacklevel=3)
        sizes.append(size)
    return sizes


def _check_ensemble(ensemble) -> None:
    if ensemble != "auto" and (isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1):
        raise ValueError(f"ensemble must be a positive integer or 'auto', got {ensemble!r}")


def run_study(
    spec: StudySpec,
    store_path: str | os.PathLike,
    **options,
) -> StudySummary:
    """Run the trials of ``spec`` that the store at ``store_path`` lacks, storing each as it finishes:
    ``run_specs([spec], store_path, **options)[0]`` (the options are ``run_sweep``'s)."""
    return run_specs([spec], store_path, **options)[0]


def sweep_grid(workload: Workload | str, optimizers: Sequence[str], batch_sizes: Sequence[int], *,
               quick: bool = False) -> tuple[Workload, list[str], list[int]]:
    """The checked ``(workload, optimizers, batch_sizes)`` of a sweep: ``workload`` resolved by name
    (and to its ``--quick`` variant), optimizer names and batch sizes validated."""
    from nnbench.optim import OPTIMIZERS
    from nnbench.workloads import get_workload

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
    return workload, optimizers, batch_sizes


def run_sweep(
    workload: Workload | str,
    optimizers: Sequence[str],
    batch_sizes: Sequence[int],
    trials_per_study: int,
    store_path: str | os.PathLike,
    *,
    device="auto",
    quick: bool = False,
    progress: bool | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    search_spaces: Mapping[str, SearchSpace] | None = None,
    instruments: Sequence = (),
    instrument_every: int | None = None,
    ensemble: int | str = 1,
    engine: Engine | None = None,
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
        progress: True: tqdm bars (one over the sweep's trials, one over each trial's steps); False:
            nothing; None (default): bars when stderr is a terminal, else one line per finished
            study on stderr.
        seed: seeds the searches and trials of every study.
        data_dir: local data of real data sets.
        search_spaces: per optimizer, a search space replacing the workload's default.
        instruments, instrument_every: passed to every trial.
        ensemble: trials of a study trained at once as one batched ensemble (``nnbench.ensemble``): a
            positive integer, or ``"auto"`` (chosen by device and model size); 1 runs them one at a
            time, as does a workload / optimizer that ``nnbench.ensemble.ensemble_supported`` refuses
            (a warning says why when a size > 1 was asked for explicitly). An ensemble is one unit of
            work for the engine.
        engine: where the trials run (``nnbench.engines``): None for the local engine (this process),
            or e.g. ``nnbench.engines.ray.RayEngine(...)``.

    Returns:
        One :class:`StudySummary` per (optimizer, batch size), in the order given.

    Raises:
        StudyBusy (a ValueError): another process is running one of these studies (see
            ``nnbench.store.study_leases``); nothing is run.
    """
    workload, optimizers, batch_sizes = sweep_grid(workload, optimizers, batch_sizes, quick=quick)
    if isinstance(trials_per_study, bool) or not isinstance(trials_per_study, int) or trials_per_study < 1:
        raise ValueError(f"trials_per_study must be a positive integer, got {trials_per_study!r}")
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
    return run_specs(specs, store_path, device=device, progress=progress, data_dir=data_dir,
                     instruments=instruments, instrument_every=instrument_every, ensemble=ensemble,
                     engine=engine)


def run_specs(
    specs: Sequence[StudySpec],
    store_path: str | os.PathLike,
    *,
    device="auto",
    progress: bool | None = None,
    data_dir: str | None = None,
    instruments: Sequence = (),
    instrument_every: int | None = None,
    ensemble: int | str = 1,
    engine: Engine | None = None,
) -> list[StudySummary]:
    """Run (or resume, or extend) the given studies of one workload: ``run_sweep`` for studies whose
    search spaces differ per batch size (``nnbench.protocol``'s focused and seed rounds). The
    keyword arguments are those of ``run_sweep``.

    The studies' leases are taken first and the data set is built (in this process: on the engine's
    device for an in-process engine, else on the CPU, to size ensembles) before any study is written,
    so a second sweep on a study, or a data set that fails to load, leaves the store as it was.

    Returns one :class:`StudySummary` per spec, in order.
    """
    from tqdm.auto import tqdm

    from nnbench.device import resolve_device
    from nnbench.engines.local import LocalEngine
    from nnbench.workloads import build_workload_data

    _check_ensemble(ensemble)
    specs = list(specs)
    if not specs:
        return []
    workload = specs[0].workload
    if any(spec.workload != workload for spec in specs):
        raise ValueError("run_specs: all studies must share one workload (one data set is built)")
    bars = sys.stderr.isatty() if progress is None else bool(progress)
    engine = engine or LocalEngine(progress=bars)
    trial_device = engine.worker_device(device)  # refuses a device the engine cannot use
    options = TrialOptions(instruments, instrument_every)
    with study_leases(store_path, [spec.definition() for spec in specs]):
        missing = _missing_trials(store_path, specs)
        data = None
        if missing:
            here = resolve_device(trial_device) if engine.in_process else resolve_device("cpu")
            data = build_workload_data(workload, device=here, data_dir=data_dir)
        sizes = _ensemble_sizes(specs, ensemble, data=data, device=trial_device, instrumented=bool(instruments))
        lines = (lambda s: print(_study_line(s), file=sys.stderr, flush=True)) if progress is None and not bars \
            else None
        with Store(store_path) as store, tqdm(total=missing, desc=f"{workload.name} trials", unit="trial",
                                               disable=not bars) as bar:
            records, groups = _plan(specs, store, options, sizes)
            return _execute(records, groups, store, engine=engine, device=device, data_dir=data_dir,
                            data=data if engine.in_process else None, bar=bar, on_study=lines)


def _missing_trials(store_path, specs: Sequence[StudySpec]) -> int:
    """Trials of ``specs`` not yet in the store (read only: the store is not created)."""
    if not os.path.exists(store_path):
        return sum(spec.max_trials for spec in specs)
    missing = 0
    with Store(store_path, create=False) as store:
        for spec in specs:
            record = store.find_study(spec.definition())
            done = set() if record is None else store.finished_indices(record.id)
            missing += len(set(range(spec.max_trials)) - done)
    return missing


def _study_line(s: StudySummary) -> str:
    """One line on a finished study, for logs (no progress bar off a terminal)."""
    c = s.counts
    steps = "-" if s.steps_to_result is None else s.steps_to_result
    return (f"{s.workload} {s.optimizer} B={s.batch_size}: {s.trials_done} of {s.max_trials} trials "
            f"(C/I/X {c.get('COMPLETE', 0)}/{c.get('INCOMPLETE', 0)}/{c.get('INFEASIBLE', 0)}), "
            f"steps to result {steps}")


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def format_table(summaries: Sequence[StudySummary]) -> str:
    """A plain-text table: per study the trials by status, steps to result, best hyperparameters and
    edge flags (``!lr=high``: the best lr is at the top of its range); with a "round" column (search,
    focus, seeds) when a study belongs to a measurement protocol."""
    header = ["workload", "optimizer", "batch", "trials C/I/X", "steps_to_result", "best hparams", "edge"]
    protocol = any(s.protocol_round for s in summaries)
    if protocol:
        header.insert(3, "round")
    rows = [header]
    for s in summaries:
        c = s.counts
        trials = f"{c.get('COMPLETE', 0)}/{c.get('INCOMPLETE', 0)}/{c.get('INFEASIBLE', 0)} of {s.max_trials}"
        best = "-" if s.best_hparams is None else " ".join(f"{k}={_fmt(v)}" for k, v in s.best_hparams.items())
        edges = " ".join(f"!{k}={side}" for k, side in s.edges.items()) or ""
        if s.failures:
            trials += f" ({len(s.failures)} failed)"
        steps = "-" if s.steps_to_result is None else str(s.steps_to_result)
        row = [s.workload, s.optimizer, str(s.batch_size), trials, steps, best, edges]
        if protocol:
            row.insert(3, s.protocol_round or "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
