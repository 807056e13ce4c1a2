"""Shallue et al.'s published layout (google-research/batch_science), read into and written from a store.

Shallue et al. (2018) published their measurements as one directory per study::

    dataset/model/optimizer/batch_size/study.json
    dataset/model/optimizer/batch_size/trial_id/metadata.json
    dataset/model/optimizer/batch_size/trial_id/measurements.csv

(a *workload* is dataset + model + optimizer there; a *study* the search at one batch size; a
*trial* one training run). :func:`import_batch_science` reads any subset of such a tree (the whole
archive, one workload, one study) into an ``nnbench.store`` file; :func:`export_batch_science`
writes a store's studies in the same layout. Fields relied on (the batch_science README and
``data_loader.py``), everything else is ignored on import:

- ``study.json``: ``batch_size`` (int), ``dataset``, ``model``, ``optimizer`` (strings),
  ``train_steps`` (int >= 0; 0 marks a time budget), ``parameter_configs`` (name -> ``type``
  ``DOUBLE`` / ``INTEGER`` / ``DISCRETE``, ``min_value``, ``max_value``, ``scale`` ``LINEAR_SCALE`` /
  ``LOG_SCALE`` / ``REVERSE_LOG_SCALE`` / ``""``, ``feasible_points``); ``early_stopping`` is kept
  as read. The whole object is kept in the study's definition, so an export writes it back.
- ``metadata.json``: ``trial_id`` (int, equal to the directory's name), ``status`` (``COMPLETE``:
  trained its budget; ``INCOMPLETE``: stopped for another reason; ``INFEASIBLE``: diverged),
  ``steps`` (training steps taken) and ``parameters`` (name -> number). ``_internal_*`` fields are
  dropped.
- ``measurements.csv``: a ``step`` column and one column per metric (e.g.
  ``val/classification_error``, ``val/cross_entropy_error``); a blank cell is "not measured".

Steps to result follows Shallue et al. (``measurement_utils.compute_steps_to_result``): among the
``COMPLETE`` trials, the first evaluation whose ``metric`` column *beats* the threshold (strictly:
``<`` for a ``min`` metric, ``>`` for ``max``), fewest steps over the trials (lowest trial id on
ties). In the store, whose statuses say whether a trial reached the target, a ``COMPLETE`` trial
that beat the threshold stays ``COMPLETE`` with that step as its ``steps_to_result``; one that did
not becomes ``INCOMPLETE``; ``INCOMPLETE`` and ``INFEASIBLE`` stay as they are (with their original
status named in ``error``), so ``nnbench status`` and ``nnbench compare`` read imported studies
exactly like swept ones. Names are mapped to nnbench's: optimizer ``nesterov_momentum`` ->
``nesterov``, parameter ``learning_rate`` -> ``lr`` (the others are kept), and the workload is
``<dataset>_<model>``. The layout records no seeds, wall times or devices: imported trials get seed
0, wall time 0 s and device ``"unknown"``; the study's seed is 0 and its ``max_steps`` is
``train_steps`` (or, for a time budget, the most steps any trial took).

On export every file carries Shallue et al.'s fields plus an ``"nnbench"`` object (the study's
definition and trial budget; a trial's seed, wall time, device and error), which an import reads
back, so import -> export -> import keeps every study, trial, status, measurement and steps to
result. A swept trial that reached the target is exported ``COMPLETE`` (nnbench stops a trial at
its target); one that ran out of budget is ``COMPLETE`` too (it trained its whole budget without
diverging) and, its threshold never beaten, comes back ``INCOMPLETE``. Studies exported by nnbench
keep nnbench's rule (the first evaluation *at or beyond* the target, ``nnbench.trial``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnbench.search import Param, SearchSpace
from nnbench.store import Measurement, Status, Store, StudyRecord, TrialResult

__all__ = [
    "DEFAULT_METRIC",
    "ExportReport",
    "ImportReport",
    "StudyData",
    "export_batch_science",
    "find_studies",
    "import_batch_science",
    "read_study",
    "steps_to_result",
]

DEFAULT_METRIC = "val/classification_error"

# Shallue et al.'s names -> nnbench's (both ways; names absent here are the same in both).
_OPTIMIZERS = {"nesterov_momentum": "nesterov"}
_PARAMS = {"learning_rate": "lr"}
_SCALES = {"LINEAR_SCALE": "linear", "LOG_SCALE": "log", "REVERSE_LOG_SCALE": "reverse_log", "": "linear"}
_STATUSES = ("COMPLETE", "INCOMPLETE", "INFEASIBLE")
_SOURCE_ERRORS = {"INCOMPLETE": "did not complete (batch_science status INCOMPLETE)",
                  "INFEASIBLE": "diverged (batch_science status INFEASIBLE)"}


def _invert(d: Mapping[str, str]) -> dict[str, str]:
    return {v: k for k, v in d.items()}


@dataclass(frozen=True)
class StudyData:
    """One study read from disk: its store definition, trial budget and trials (with measurements)."""

    path: Path
    definition: Mapping
    max_trials: int
    trials: tuple[TrialResult, ...]


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_batch_science` did: studies read, trials written and already stored."""

    studies: int
    trials_written: int
    trials_skipped: int
    study_ids: tuple[int, ...]


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_batch_science` wrote: one folder per study, one per trial."""

    studies: int
    trials: int
    paths: tuple[str, ...]


# ------------------------------------------------------------------------------------ reading
def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (every study folder needs study.json, every trial "
                                f"folder metadata.json and measurements.csv)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _field(data: Mapping, name: str, path: Path, kind, *, minimum: int | None = None):
    if name not in data:
        raise ValueError(f"{path}: lacks the field {name!r}")
    v = data[name]
    ok = isinstance(v, kind) and not isinstance(v, bool)
    if ok and minimum is not None:
        ok = v >= minimum
    if not ok:
        want = kind.__name__ if minimum is None else f"{kind.__name__} >= {minimum}"
        raise ValueError(f"{path}: field {name!r} must be {want}, got {v!r}")
    return v


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}, column {column!r}: {text!r} is not a number") from None


def _read_measurements(path: Path) -> tuple[list[str], list[Measurement]]:
    """(metric columns, measurements in file order) of one ``measurements.csv``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (every trial folder needs measurements.csv)")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "step" not in header:
            raise ValueError(f"{path}: the first line must be a header with a 'step' column, got {header!r}")
        if len(set(header)) != len(header):
            raise ValueError(f"{path}: repeated column names in the header {header!r}")
        at = header.index("step")
        out = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
            step = _number(row[at], path, line, "step")
            if not (math.isfinite(step) and step == int(step) and step >= 0):
                raise ValueError(f"{path}: line {line}: step must be a non-negative integer, got {row[at]!r}")
            for name, text in zip(header, row, strict=True):
                if name != "step" and text.strip() != "":
                    out.append(Measurement(int(step), name, _number(text, path, line, name)))
    return [h for h in header if h != "step"], out


def _search_space(configs: Mapping, path: Path) -> SearchSpace:
    """The searched DOUBLE / INTEGER parameters as a :class:`SearchSpace` (DISCRETE ones, which it
    cannot express, stay only in the kept ``study.json``; a one-value range is fixed)."""
    if not isinstance(configs, Mapping):
        raise ValueError(f"{path}: parameter_configs must be an object, got {configs!r}")
    params, fixed = [], {}
    for name, c in configs.items():
        if not isinstance(c, Mapping) or "type" not in c:
            raise ValueError(f"{path}: parameter_configs[{name!r}] lacks 'type'")
        if c["type"] == "DISCRETE":
            continue
        if c["type"] not in ("DOUBLE", "INTEGER"):
            raise ValueError(f"{path}: parameter_configs[{name!r}] type must be DOUBLE, INTEGER or "
                             f"DISCRETE, got {c['type']!r}")
        scale = c.get("scale", "")
        if scale not in _SCALES:
            raise ValueError(f"{path}: parameter_configs[{name!r}] scale must be one of {list(_SCALES)}, "
                             f"got {scale!r}")
        ours = _PARAMS.get(name, name)
        try:
            low, high = float(c["min_value"]), float(c["max_value"])
            if low == high:
                fixed[ours] = low
            else:
                params.append(Param(ours, low, high, _SCALES[scale]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: parameter_configs[{name!r}]: {e}") from None
    return SearchSpace(tuple(params), fixed)


def _threshold(definition: Mapping) -> tuple[str, float, str, bool]:
    """(measurement column, target, direction, target itself counts) of a study definition."""
    source = definition.get("source")
    if source is not None:
        return source["metric_column"], float(definition["target"]), definition["direction"], False
    wd = definition.get("workload_definition")
    if not wd:
        raise ValueError(f"study of {definition.get('workload')!r}: its definition names no measured "
                         f"metric (neither 'source' nor 'workload_definition')")
    return f"{wd['eval_split']}_{wd['metric']}", float(definition["target"]), definition["direction"], True


def steps_to_result(measurements: Sequence[Measurement], column: str, target: float, direction: str,
                    *, inclusive: bool = False) -> int | None:
    """Step of the first ``column`` measurement that beats ``target`` (``direction`` ``"min"``:
    below it, ``"max"``: above it; ``inclusive``: reaching it is enough), or None.

    Shallue et al.'s rule is strict (``inclusive=False``); nnbench's trials stop at the first
    evaluation at or beyond the target (``inclusive=True``).
    """
    if direction not in ("min", "max"):
        raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
    best = None
    for m in measurements:
        if m.name != column or not math.isfinite(m.value):
            continue
        d = m.value - target if direction == "max" else target - m.value
        if (d >= 0 if inclusive else d > 0) and (best is None or m.step < best):
            best = m.step
    return best


def _metric_summary(measurements: Sequence[Measurement], column: str, direction: str):
    values = [m.value for m in sorted((m for m in measurements if m.name == column), key=lambda m: m.step)]
    finite = [v for v in values if math.isfinite(v)]
    final = values[-1] if values and math.isfinite(values[-1]) else None
    best = (max(finite) if direction == "max" else min(finite)) if finite else None
    return final, best


def _guess_direction(column: str) -> str | None:
    low = column.lower()
    if any(k in low for k in ("error", "loss", "entropy", "perplexity", "mse")):
        return "min"
    if "accuracy" in low:
        return "max"
    return None


def _foreign_definition(study: Mapping, path: Path, metric: str | None, target: float | None,
                        direction: str | None, trial_steps: Sequence[int]) -> dict:
    batch_size = _field(study, "batch_size", path, int, minimum=1)
    dataset = _field(study, "dataset", path, str)
    model = _field(study, "model", path, str)
    optimizer = _field(study, "optimizer", path, str)
    train_steps = _field(study, "train_steps", path, int, minimum=0)
    space = _search_space(_field(study, "parameter_configs", path, dict), path)
    column = metric or DEFAULT_METRIC
    if target is None:
        raise ValueError(f"{path}: a study from Shallue et al.'s data carries no target: pass --target "
                         f"(the threshold of {column!r} that counts as reached)")
    if not math.isfinite(target):
        raise ValueError(f"--target must be a finite number, got {target!r}")
    direction = direction or _guess_direction(column)
    if direction is None:
        raise ValueError(f"--direction: cannot tell whether {column!r} improves up or down; pass "
                         f"--direction min or --direction max")
    max_steps = train_steps or max([1, *trial_steps])
    return {
        "workload": f"{dataset}_{model}",
        "optimizer": _OPTIMIZERS.get(optimizer, optimizer),
        "batch_size": batch_size,
        "metric": column,
        "target": float(target),
        "direction": direction,
        "max_steps": max_steps,
        "seed": 0,
        "search_space": space.to_dict(),
        "source": {"format": "batch_science", "metric_column": column, "study": dict(study)},
    }


def _read_trial(trial_dir: Path, column: str, target: float, direction: str, inclusive: bool) -> TrialResult:
    meta_path = trial_dir / "metadata.json"
    meta = _read_json(meta_path)
    trial_id = _field(meta, "trial_id", meta_path, int, minimum=0)
    if str(trial_id) != trial_dir.name:
        raise ValueError(f"{meta_path}: trial_id {trial_id} differs from its folder's name {trial_dir.name!r}")
    status = _field(meta, "status", meta_path, str)
    if status not in _STATUSES:
        raise ValueError(f"{meta_path}: status must be one of {list(_STATUSES)}, got {status!r}")
    steps = _field(meta, "steps", meta_path, int, minimum=0)
    params = _field(meta, "parameters", meta_path, dict)
    hparams = {}
    for name, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{meta_path}: parameter {name!r} must be a finite number, got {v!r}")
        hparams[_PARAMS.get(name, name)] = float(v)
    _, measurements = _read_measurements(trial_dir / "measurements.csv")
    extra = meta.get("nnbench") or {}
    error = extra.get("error", _SOURCE_ERRORS.get(status))
    reached = None
    if status == "COMPLETE":
        reached = steps_to_result(measurements, column, target, direction, inclusive=inclusive)
        ours = Status.COMPLETE if reached is not None else Status.INCOMPLETE
    else:
        ours = Status(status)
    final, best = _metric_summary(measurements, column, direction)
    return TrialResult(
        index=trial_id, status=ours, hparams=hparams, steps_to_result=reached, steps_run=steps,
        final_metric=final, best_metric=best, wall_time=float(extra.get("wall_time", 0.0)),
        device=str(extra.get("device", "unknown")), seed=int(extra.get("seed", 0)), error=error,
        measurements=tuple(measurements))


def read_study(study_dir: str | os.PathLike, *, metric: str | None = None, target: float | None = None,
               direction: str | None = None) -> StudyData:
    """Read one study folder (``study.json`` and its integer-named trial folders).

    Args:
        study_dir: the folder holding ``study.json``.
        metric: the ``measurements.csv`` column compared with the target (default
            ``val/classification_error``); target: the threshold (needed unless the study was
            exported by nnbench); direction: ``"min"`` or ``"max"`` (default: from the column's name).
            All three apply to studies from Shallue et al.'s data; a study exported by nnbench keeps
            its own (giving a different one is an error).
    Raises:
        FileNotFoundError / ValueError naming the file that is missing, malformed or inconsistent.
    """
    study_dir = Path(study_dir)
    path = study_dir / "study.json"
    study = _read_json(path)
    trial_dirs = []
    for entry in sorted(study_dir.iterdir()):
        if entry.is_dir():
            if not entry.name.isdigit():
                raise ValueError(f"{entry}: a trial folder's name must be its integer trial_id")
            trial_dirs.append(entry)
    trial_dirs.sort(key=lambda p: int(p.name))
    own = study.pop("nnbench", None)
    if own is not None:
        if not isinstance(own, Mapping) or not isinstance(own.get("definition"), Mapping):
            raise ValueError(f"{path}: the 'nnbench' object must hold the study's 'definition'")
        definition = dict(own["definition"])
        try:
            column = _threshold(definition)[0]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: the 'nnbench' definition is incomplete ({e})") from None
        for flag, given, have in (("--metric", metric, column), ("--target", target, definition.get("target")),
                                  ("--direction", direction, definition.get("direction"))):
            if given is not None and given != have:
                raise ValueError(f"{path}: exported by nnbench with its own target ({definition.get('metric')} "
                                 f"{definition.get('direction')} {definition.get('target')}); {flag} "
                                 f"{given!r} cannot change it")
    else:
        steps = []
        for d in trial_dirs:
            meta = _read_json(d / "metadata.json")
            steps.append(_field(meta, "steps", d / "metadata.json", int, minimum=0))
        definition = _foreign_definition(study, path, metric, target, direction, steps)
    try:
        column, tgt, dirn, inclusive = _threshold(definition)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: the 'nnbench' definition is incomplete ({e})") from None
    if "batch_size" in study and study["batch_size"] != definition.get("batch_size"):
        raise ValueError(f"{path}: batch_size {study['batch_size']!r} differs from the definition's "
                         f"{definition.get('batch_size')!r}")
    if study_dir.name.isdigit() and int(study_dir.name) != definition.get("batch_size"):
        raise ValueError(f"{path}: batch_size {definition.get('batch_size')!r} differs from its folder's "
                         f"name {study_dir.name!r}")
    trials = tuple(_read_trial(d, column, tgt, dirn, inclusive) for d in trial_dirs)
    if trials and not any(m.name == column for t in trials for m in t.measurements):
        names = sorted({m.name for t in trials for m in t.measurements})
        raise ValueError(f"{path}: no trial measured {column!r} (--metric); columns found: {names}")
    max_trials = len(trials)
    if own is not None and "max_trials" in own:
        max_trials = max(max_trials, _field(own, "max_trials", path, int, minimum=0))
    return StudyData(path=study_dir, definition=definition, max_trials=max_trials, trials=trials)


def find_studies(root: str | os.PathLike) -> list[Path]:
    """Every folder under ``root`` (``root`` included) that holds a ``study.json``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found = []
    for here, dirs, files in os.walk(root):
        if "study.json" in files:
            found.append(Path(here))
            dirs[:] = []  # a study's subfolders are its trials
        dirs.sort()
    if not found:
        raise ValueError(f"{root}: no study.json below it (expected dataset/model/optimizer/batch_size/"
                         f"study.json, or a study folder itself)")
    return sorted(found)


def import_batch_science(root: str | os.PathLike, store_path: str | os.PathLike, *,
                         metric: str | None = None, target: float | None = None,
                         direction: str | None = None, progress: bool = False) -> ImportReport:
    """Read every study under ``root`` into the store at ``store_path`` (created if missing).

    Each study is read and checked whole before any of it is written; trials already in the store
    (same study definition, same trial id) are skipped, so importing twice changes nothing.
    ``metric``, ``target``, ``direction``: see :func:`read_study`; ``progress``: a bar over studies.
    """
    from tqdm.auto import tqdm

    dirs = find_studies(root)
    written = skipped = 0
    ids = []
    with Store(store_path) as store:
        for d in tqdm(dirs, desc="studies", unit="study", disable=not progress):
            data = read_study(d, metric=metric, target=target, direction=direction)
            record = store.ensure_study(data.definition, data.max_trials)
            done = store.finished_indices(record.id)
            for t in data.trials:
                if t.index in done:
                    skipped += 1
                    continue
                store.write_trial(record.id, t)
                written += 1
            ids.append(record.id)
    return ImportReport(studies=len(dirs), trials_written=written, trials_skipped=skipped, study_ids=tuple(ids))


# ------------------------------------------------------------------------------------ writing
def _parameter_configs(space: Mapping) -> dict:
    scales = _invert(_SCALES)
    scales["linear"] = "LINEAR_SCALE"
    names = _invert(_PARAMS)
    out = {}
    for p in space.get("params", []):
        out[names.get(p["name"], p["name"])] = {"type": "DOUBLE", "min_value": p["low"], "max_value": p["high"],
                                                "scale": scales[p["scale"]]}
    for name, v in space.get("fixed", {}).items():
        out[names.get(name, name)] = {"type": "DISCRETE", "feasible_points": [v]}
    return out


def _study_json(s: StudyRecord) -> tuple[dict, tuple[str, str, str]]:
    """(study.json content, (dataset, model, optimizer) folder names) of a stored study."""
    d = s.definition
    source = d.get("source")
    if source is not None:
        study = dict(source["study"])
    else:
        wd = d.get("workload_definition") or {}
        if "dataset" not in wd or "model" not in wd:
            raise ValueError(f"study {s.id} ({s.workload}): its definition names no dataset and model")
        study = {"batch_size": s.batch_size, "dataset": wd["dataset"], "model": wd["model"],
                 "optimizer": _invert(_OPTIMIZERS).get(s.optimizer, s.optimizer),
                 "parameter_configs": _parameter_configs(s.search_space), "train_steps": s.max_steps,
                 "early_stopping": False}
    study["nnbench"] = {"definition": d, "max_trials": s.max_trials}
    return study, (str(study["dataset"]), str(study["model"]), str(study["optimizer"]))


def _write_measurements(path: Path, measurements: Sequence[Measurement]) -> None:
    """Wide CSV: one row per step (more rows for a step that repeats a name), one column per name."""
    names = list(dict.fromkeys(m.name for m in measurements))
    by_step: dict[int, list[dict[str, float]]] = defaultdict(list)
    for m in measurements:
        rows = by_step[m.step]
        row = next((r for r in rows if m.name not in r), None)
        if row is None:
            row = {}
            rows.append(row)
        row[m.name] = m.value
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *names])
        for step in sorted(by_step):
            for row in by_step[step]:
                w.writerow([step, *(repr(row[n]) if n in row else "" for n in names)])


def _their_status(t: TrialResult) -> str:
    if t.status is Status.INCOMPLETE and t.error is None:
        return "COMPLETE"  # ran its whole budget without diverging: "completed" in Shallue et al.'s sense
    return t.status.value


def export_batch_science(store_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                         workload: str | None = None) -> ExportReport:
    """Write the studies of a store (or of one ``workload``) under ``out_dir`` in Shallue et al.'s layout.

    Refuses to overwrite: a study folder that already exists, or two studies that would share one
    (same dataset, model, optimizer and batch size: export one workload or target at a time), is
    an error before anything is written.
    """
    out = Path(out_dir)
    with Store(store_path, create=False) as store:
        studies = [s for s in store.studies() if workload is None or s.workload == workload]
        if not studies:
            have = sorted({s.workload for s in store.studies()})
            raise ValueError(f"workload: no studies of {workload!r} in the store; it holds {have}"
                             if workload else f"store {str(store_path)!r} holds no studies")
        plan, seen = [], {}
        for s in studies:
            study, (dataset, model, opt) = _study_json(s)
            folder = out / dataset / model / opt / str(s.batch_size)
            if folder in seen:
                raise ValueError(f"studies {seen[folder]} and {s.id} would both go to {folder}: export one "
                                 f"workload (--workload) or target at a time")
            if folder.exists():
                raise ValueError(f"{folder} already exists: export into an empty folder")
            seen[folder] = s.id
            plan.append((s, study, folder))
        n_trials = 0
        for s, study, folder in plan:
            folder.mkdir(parents=True)
            (folder / "study.json").write_text(json.dumps(study, indent=2, allow_nan=False) + "\n")
            names = _invert(_PARAMS)
            integer = {k for k, c in study.get("parameter_configs", {}).items()
                       if isinstance(c, Mapping) and c.get("type") == "INTEGER"}
            for t in store.trials(s.id, with_measurements=True):
                tdir = folder / str(t.index)
                tdir.mkdir()
                params = {}
                for k, v in t.hparams.items():
                    name = names.get(k, k)
                    params[name] = int(v) if name in integer and float(v).is_integer() else v
                meta = {"parameters": params, "status": _their_status(t), "steps": t.steps_run,
                        "trial_id": t.index,
                        "nnbench": {"seed": t.seed, "wall_time": t.wall_time, "device": t.device, "error": t.error}}
                (tdir / "metadata.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
                _write_measurements(tdir / "measurements.csv", t.measurements)
                n_trials += 1
    return ExportReport(studies=len(plan), trials=n_trials, paths=tuple(str(p[2]) for p in plan))
