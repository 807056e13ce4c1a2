"""A measurement protocol for steps to result: search, focused search, then seeds.

Per (optimizer, batch size) of a workload, three rounds, each an ordinary stored study (so trial ``i``
of a study is always the same point and seed, resuming repeats nothing, and whatever runs
``nnbench.study.run_specs`` runs the rounds):

1. *search*: a quasi-random search over the workload's space (Shallue et al. 2018, section 3), the
   same study as ``nnbench sweep`` with the same workload definition;
2. *focus*: a quasi-random search over :func:`nnbench.search.focus_space` of the ``top_k`` best
   COMPLETE trials of round 1 (their scaled ranges plus a margin); where round 1's best trial sits at
   a boundary, that end is moved beyond the original space. The study's definition records
   ``protocol = {"round": "focus", "parent": <round-1 study key>, "widened": {name: "low"|"high"},
   ...}``, and its search space is the focused one, so a different round 1 gives a different study;
3. *seeds*: the best configuration over rounds 1-2 (fewest steps over COMPLETE trials) re-run with
   ``seeds`` fresh seeds: a study whose space has no searched parameter (all hyperparameters fixed),
   trial ``i`` seeded ``trial_seed(seed + 2, i)`` (never a seed of rounds 1-2, so the lucky trial that
   picked the configuration is not among them).

Steps to result is reported twice: the best over the search (rounds 1-2: tuning and seed luck
included, the quantity of Shallue et al.) and the median over seeds of the best configuration with a
distribution-free order-statistic interval (:func:`median_interval`). Trials that did not reach the
target count as "more than the budget", which order statistics handle without an assumption. The
default evaluation grid is the geometric one (``nnbench.trial.is_eval_step``): steps to result within
3% of the first step at the target, at every batch size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nnbench.search import SearchSpace, focus_space
from nnbench.store import Measurement, Status, Store, StudyRecord, TrialResult
from nnbench.study import (
    EDGE_TOL,
    StudySpec,
    StudySummary,
    best_trial,
    run_specs,
    summarize,
    sweep_grid,
)
from nnbench.workloads import Workload

__all__ = [
    "MedianInterval",
    "ProtocolSummary",
    "median_interval",
    "eval_fraction",
    "trial_times",
    "focus_spec",
    "seeds_spec",
    "run_protocol",
    "format_protocol",
]


@dataclass(frozen=True)
class MedianInterval:
    """The median of ``n`` values with a distribution-free confidence interval.

    The interval is ``[x_(l), x_(n+1-l)]`` (order statistics, 1-based) with the largest ``l`` whose
    coverage ``1 - 2 P(Binomial(n, 1/2) <= l - 1)`` is at least the confidence asked for; with too few
    values (``n <= 5`` for 95%) it is ``[min, max]`` and ``coverage`` says how much less it covers.
    ``math.inf`` stands for a value beyond the budget (a trial that never reached the target); a
    median or bound that is infinite is reported as None ("more than the budget") by :meth:`to_dict`.

    Attributes:
        values: the sorted values (steps; ``inf`` when the target was not reached).
        median: the sample median (mean of the two middle values when ``n`` is even).
        low, high: the interval's bounds.
        coverage: its exact coverage probability for the population median (continuous values).
    """

    values: tuple[float, ...]
    median: float
    low: float
    high: float
    coverage: float

    @property
    def n(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict:
        def finite(v):
            return None if math.isinf(v) else v

        return {"n": self.n, "median": finite(self.median), "low": finite(self.low), "high": finite(self.high),
                "coverage": self.coverage, "values": [finite(v) for v in self.values]}


def median_interval(values: Sequence[float], *, confidence: float = 0.95) -> MedianInterval:
    """The median of ``values`` and its order-statistic interval (:class:`MedianInterval`)."""
    from scipy.stats import binom

    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    x = sorted(float(v) for v in values)
    n = len(x)
    if n < 2:
        raise ValueError(f"median_interval: need at least 2 values for an interval, got {n}")
    if any(math.isnan(v) for v in x):
        raise ValueError("median_interval: values must not be NaN")
    median = x[n // 2] if n % 2 else (x[n // 2 - 1] + x[n // 2]) / 2
    best_l = 1
    for l in range(1, n // 2 + 1):  # noqa: E741  (the order-statistic index of the textbooks)
        if 1 - 2 * binom.cdf(l - 1, n, 0.5) >= confidence:
            best_l = l
    coverage = float(1 - 2 * binom.cdf(best_l - 1, n, 0.5))
    return MedianInterval(tuple(x), median, x[best_l - 1], x[n - best_l], coverage)


def trial_times(measurements: Sequence[Measurement]) -> tuple[float, float]:
    """``(training seconds, other seconds)`` of one trial between its first and last evaluation, from
    its ``train_time`` and ``wall_time`` measurements: "other" is time outside training steps, i.e.
    evaluations (and instruments, when any ran). ``(0, 0)`` without two timed evaluations."""
    walls = [m.value for m in measurements if m.name == "wall_time"]
    trains = [m.value for m in measurements if m.name == "train_time"]
    if len(walls) < 2 or not trains:
        return 0.0, 0.0
    return trains[-1], max(0.0, walls[-1] - walls[0] - trains[-1])


def eval_fraction(store: Store, study_id: int) -> tuple[float, float]:
    """``(training seconds, other seconds)`` summed over the stored trials of a study (:func:`trial_times`)."""
    train = other = 0.0
    for t in store.trials(study_id):
        a, b = trial_times(store.measurements(study_id, t.index))
        train, other = train + a, other + b
    return train, other


def _best_trials(trials: Sequence[TrialResult], k: int) -> list[TrialResult]:
    complete = [t for t in trials if Status(t.status) is Status.COMPLETE]
    return sorted(complete, key=lambda t: (t.steps_to_result, t.index))[:k]


def focus_spec(parent: StudySpec, parent_record: StudyRecord, trials: Sequence[TrialResult], *, max_trials: int,
               top_k: int = 3, margin: float = 0.15, widen: float = 0.5, tol: float = EDGE_TOL) -> StudySpec | None:
    """The focused round's study after ``parent`` (round 1) and its stored ``trials``, or None when
    no trial is COMPLETE (nothing to focus on). Deterministic in the stored trials."""
    best = _best_trials([t for t in trials if t.index < parent.max_trials], top_k)
    if not best:
        return None
    space, widened = focus_space(parent.search_space, [t.hparams for t in best], margin=margin, widen=widen, tol=tol)
    tag = {"round": "focus", "parent": parent_record.key, "widened": widened, "top_k": top_k, "margin": margin,
           "widen": widen}
    return StudySpec(parent.workload, parent.optimizer, parent.batch_size, space, max_trials, parent.seed + 1, tag)


def seeds_spec(parent: StudySpec, source: StudyRecord, trial: TrialResult, *, seeds: int) -> StudySpec:
    """The seeds round: ``trial``'s hyperparameters (all fixed) re-run with ``seeds`` fresh seeds."""
    space = SearchSpace((), dict(trial.hparams))
    tag = {"round": "seeds", "source": {"study": source.key, "trial": trial.index}}
    return StudySpec(parent.workload, parent.optimizer, parent.batch_size, space, seeds, parent.seed + 2, tag)


@dataclass(frozen=True)
class ProtocolSummary:
    """The protocol's result for one (optimizer, batch size).

    Attributes:
        search, focus, seeds: the three rounds' study summaries (None: a round that could not run).
        widened: parameters whose focused range was moved beyond round 1's space, ``{name: side}``.
        best_steps: fewest steps to result over the COMPLETE trials of rounds 1-2 (tuning luck in).
        best_round, best_hparams: where that trial is, and its hyperparameters.
        seed_steps: median over seeds of the best configuration with its interval (None: no round 3).
        eval_fraction: share of the protocol's trial time (first to last evaluation) not spent in
            training steps, i.e. evaluating; None when no timings are stored.
        notes: why a round is missing, or what limits a number.
    """

    workload: str
    optimizer: str
    batch_size: int
    search: StudySummary
    focus: StudySummary | None
    seeds: StudySummary | None
    widened: Mapping[str, str]
    best_steps: int | None
    best_round: str | None
    best_hparams: Mapping[str, float] | None
    seed_steps: MedianInterval | None
    eval_fraction: float | None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        def study(s):
            return None if s is None else {"study_id": s.study_id, "counts": dict(s.counts),
                                           "steps_to_result": s.steps_to_result, "edges": dict(s.edges)}

        return {
            "workload": self.workload, "optimizer": self.optimizer, "batch_size": self.batch_size,
            "best_over_search_steps": self.best_steps, "best_round": self.best_round,
            "best_hparams": None if self.best_hparams is None else dict(self.best_hparams),
            "median_over_seeds_steps": None if self.seed_steps is None else self.seed_steps.to_dict(),
            "widened": dict(self.widened), "eval_fraction": self.eval_fraction, "notes": list(self.notes),
            "rounds": {"search": study(self.search), "focus": study(self.focus), "seeds": study(self.seeds)},
        }


def run_protocol(
    workload: Workload | str,
    optimizers: Sequence[str],
    batch_sizes: Sequence[int],
    store_path: str | os.PathLike,
    *,
    first_round: int = 16,
    focus_round: int = 16,
    seeds: int = 8,
    top_k: int = 3,
    margin: float = 0.15,
    widen: float = 0.5,
    confidence: float = 0.95,
    eval_grid: str | None = "geometric",
    eval_rel_step: float = 0.03,
    seed: int = 0,
    quick: bool = False,
    search_spaces: Mapping[str, SearchSpace] | None = None,
    device="auto",
    progress: bool | None = None,
    data_dir: str | None = None,
    ensemble: int | str = 1,
    engine=None,
    runner: Callable[..., list[StudySummary]] = run_specs,
) -> list[ProtocolSummary]:
    """Run (or resume) the three rounds for every (optimizer, batch size) and summarise them.

    Args:
        workload: a :class:`Workload` or a name of ``WORKLOADS``.
        optimizers, batch_sizes: as for ``nnbench.study.run_sweep``.
        store_path: the SQLite file (created if missing).
        first_round, focus_round: trials of the search and of the focused search (focus 0: none).
        seeds: seeds of the best configuration (round 3; at least 2, 0: none). Six or more give a 95%
            order-statistic interval for the median.
        top_k, margin, widen: the focused space (:func:`nnbench.search.focus_space`).
        confidence: of the median's interval.
        eval_grid, eval_rel_step: the evaluation grid given to the workload (None: keep the
            workload's own); the geometric grid's relative step.
        seed: round 1 (and the searches') seed; round 2 uses ``seed + 1``, round 3 ``seed + 2``.
        quick: the workload's ``--quick`` variant.
        search_spaces: per optimizer, round 1's space (default: the workload's).
        device, progress, data_dir: as for ``run_sweep``.
        ensemble, engine: how each round's trials run (as for ``run_sweep``: batched ensembles, the
            local or the Ray engine).
        runner: runs a list of ``StudySpec`` into the store (``run_specs``'s signature).

    Returns:
        One :class:`ProtocolSummary` per (optimizer, batch size), in the order given.
    """
    workload, optimizers, batch_sizes = sweep_grid(workload, optimizers, batch_sizes, quick=quick)
    if eval_grid is not None:
        workload = workload.replace(eval_grid=eval_grid, eval_rel_step=eval_rel_step)
    for name, value, low in (("first_round", first_round, 1), ("focus_round", focus_round, 0),
                             ("seeds", seeds, 0), ("top_k", top_k, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if seeds == 1:
        raise ValueError("seeds must be 0 (no seed round) or at least 2 (a median needs an interval)")
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    search_spaces = dict(search_spaces or {})
    run = dict(store_path=store_path, device=device, progress=progress, data_dir=data_dir, ensemble=ensemble,
               engine=engine)

    first = [StudySpec(workload, opt, b, search_spaces.get(opt) or workload.search_space(opt), first_round, seed)
             for opt in optimizers for b in batch_sizes]
    runner(first, **run)

    with Store(store_path) as store:
        records = [store.ensure_study(s.definition(), s.max_trials) for s in first]
        focus = [None] * len(first)
        if focus_round:
            focus = [focus_spec(s, r, store.trials(r.id), max_trials=focus_round, top_k=top_k, margin=margin,
                                widen=widen) for s, r in zip(first, records, strict=True)]
    runner([f for f in focus if f is not None], **run)

    with Store(store_path) as store:
        best_of = []
        for s, r, f in zip(first, records, focus, strict=True):
            # only the trials this protocol asked for: a study extended elsewhere changes nothing here
            candidates = [(r, t) for t in store.trials(r.id) if t.index < s.max_trials]
            if f is not None:
                fr = store.ensure_study(f.definition(), f.max_trials)
                candidates += [(fr, t) for t in store.trials(fr.id) if t.index < f.max_trials]
            best = best_trial(t for _, t in candidates)
            best_of.append(None if best is None else next((rec, t) for rec, t in candidates if t is best))
        seed_specs = [None if (b is None or not seeds) else seeds_spec(s, b[0], b[1], seeds=seeds)
                      for s, b in zip(first, best_of, strict=True)]
    runner([s for s in seed_specs if s is not None], **run)

    with Store(store_path) as store:
        return [_summary(store, *x, confidence) for x in zip(first, records, focus, best_of, seed_specs, strict=True)]


def _summary(store: Store, spec: StudySpec, record: StudyRecord, focus: StudySpec | None, best, seeds: StudySpec | None,
             confidence: float) -> ProtocolSummary:
    notes = []
    search = summarize(store, record)
    focus_summary = seeds_summary = seed_steps = None
    studies = [record.id]
    if focus is not None:
        focus_record = store.ensure_study(focus.definition(), focus.max_trials)
        focus_summary = summarize(store, focus_record)
        studies.append(focus_record.id)
    elif search.steps_to_result is None:
        notes.append("no COMPLETE trial in the search round: no focused round or seeds (raise max_steps or "
                     "change the search space)")
    if seeds is not None:
        seeds_record = store.ensure_study(seeds.definition(), seeds.max_trials)
        seeds_summary = summarize(store, seeds_record)
        studies.append(seeds_record.id)
        steps = [math.inf if t.steps_to_result is None else t.steps_to_result for t in store.trials(seeds_record.id)
                 if t.index < seeds.max_trials]
        seed_steps = median_interval(steps, confidence=confidence)
        if seed_steps.coverage < confidence:
            notes.append(f"{seed_steps.n} seeds: the median's interval [min, max] covers only "
                         f"{seed_steps.coverage:.0%}; run more seeds for {confidence:.0%}")
        if math.isinf(seed_steps.median):
            notes.append("the best configuration misses the target with most seeds: its best-over-search "
                         "steps is seed luck")
    train = other = 0.0
    for study_id in studies:
        t, o = eval_fraction(store, study_id)
        train, other = train + t, other + o
    widened = {} if focus is None else dict(focus.protocol["widened"])
    best_round = None
    if best is not None:
        best_round = "search" if best[0].id == record.id else "focus"
    return ProtocolSummary(
        workload=spec.workload.name, optimizer=spec.optimizer, batch_size=spec.batch_size, search=search,
        focus=focus_summary, seeds=seeds_summary, widened=widened,
        best_steps=None if best is None else best[1].steps_to_result, best_round=best_round,
        best_hparams=None if best is None else dict(best[1].hparams), seed_steps=seed_steps,
        eval_fraction=other / (train + other) if train + other > 0 else None, notes=tuple(notes),
    )


def _steps(v: float | None) -> str:
    if v is None:
        return "-"
    return ">budget" if math.isinf(v) else f"{v:g}"


def format_protocol(summaries: Sequence[ProtocolSummary]) -> str:
    """A plain-text table: per (optimizer, batch size) the best-over-search steps, the median over
    seeds with its interval and coverage, widened parameters, evaluation share of the time."""
    header = ["optimizer", "batch", "best steps (round)", "median over seeds [interval] cover", "widened",
              "eval share"]
    rows = [header]
    for s in summaries:
        best = "-" if s.best_steps is None else f"{s.best_steps} ({s.best_round})"
        m = s.seed_steps
        med = "-" if m is None else (f"{_steps(m.median)} [{_steps(m.low)}, {_steps(m.high)}] "
                                     f"{m.coverage:.0%} of {m.n}")
        widened = " ".join(f"{k}={side}" for k, side in s.widened.items())
        share = "-" if s.eval_fraction is None else f"{s.eval_fraction:.1%}"
        rows.append([s.optimizer, str(s.batch_size), best, med, widened, share])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{s.optimizer} B={s.batch_size}: {n}" for s in summaries for n in s.notes]
    return "\n".join(lines + notes)
