"""Studies, trials and measurements, and the SQLite file that keeps them.

The vocabulary is that of Shallue et al. 2018's published data (and Google's init2winit /
batch_science): a *study* is (workload, optimizer, batch size, search space, budget, target); a
*trial* is one point of its search, with status COMPLETE (reached the target), INCOMPLETE (budget
ran out first) or INFEASIBLE (diverged); *measurements* are (step, name, value) triples recorded
during a trial. A trial that produced no result (its code raised, or the process or machine running it
died more often than the engine retries) is kept apart as a *failure*: its error is recorded, but it
does not count as finished, so the next run of the sweep tries it again.

Storage loses nothing: every trial is written, with all its measurements, in one transaction as
soon as it finishes (SQLite, WAL journal, ``synchronous=FULL``), so a sweep killed at any moment
keeps every finished trial and a re-run skips them. A study is identified by its definition (a
canonical JSON of everything that changes its results, without the number of trials): the same
definition reopens the same study, which is what makes resuming and extending work.

One writer per study: a sweep holds a *lease* on each of its studies while it runs
(:func:`study_leases`), so a second sweep on the same study is refused at once instead of
failing on the first trial index both wrote.

This module needs no torch: ``status`` and ``export`` read results on any machine.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

__all__ = [
    "Status",
    "Measurement",
    "TrialResult",
    "TrialFailure",
    "StudyRecord",
    "Store",
    "StudyBusy",
    "study_key",
    "study_leases",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1

# Columns of `studies` copied out of the definition so that they can be queried directly.
_STUDY_COLUMNS = ("workload", "optimizer", "batch_size", "metric", "target", "direction", "max_steps", "seed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id           INTEGER PRIMARY KEY,
    key          TEXT NOT NULL UNIQUE,      -- sha256 of the canonical definition JSON
    workload     TEXT NOT NULL,
    optimizer    TEXT NOT NULL,
    batch_size   INTEGER NOT NULL CHECK (batch_size > 0),
    metric       TEXT NOT NULL,
    target       REAL NOT NULL,
    direction    TEXT NOT NULL CHECK (direction IN ('max', 'min')),
    max_steps    INTEGER NOT NULL CHECK (max_steps > 0),
    max_trials   INTEGER NOT NULL CHECK (max_trials >= 0),
    seed         INTEGER NOT NULL,
    search_space TEXT NOT NULL,             -- JSON: {"params": [...], "fixed": {...}}
    definition   TEXT NOT NULL,             -- JSON: the whole study definition
    created      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    study_id        INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    trial_index     INTEGER NOT NULL CHECK (trial_index >= 0),
    status          TEXT NOT NULL CHECK (status IN ('COMPLETE', 'INCOMPLETE', 'INFEASIBLE')),
    hparams         TEXT NOT NULL,          -- JSON
    steps_to_result INTEGER,                -- first evaluation step at the target; NULL unless COMPLETE
    steps_run       INTEGER NOT NULL,
    final_metric    REAL,                   -- metric at the last evaluation (NULL: none / non-finite)
    best_metric     REAL,
    wall_time       REAL NOT NULL,          -- seconds
    device          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    error           TEXT,
    finished        TEXT NOT NULL,
    PRIMARY KEY (study_id, trial_index)
);
CREATE TABLE IF NOT EXISTS measurements (
    study_id    INTEGER NOT NULL,
    trial_index INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    value       REAL,                       -- NULL stands for NaN (SQLite has no NaN)
    FOREIGN KEY (study_id, trial_index) REFERENCES trials(study_id, trial_index) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS measurements_by_trial ON measurements (study_id, trial_index, step);
CREATE TABLE IF NOT EXISTS failures (       -- attempts that produced no trial; a log, never updated
    study_id    INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    trial_index INTEGER NOT NULL CHECK (trial_index >= 0),
    error       TEXT NOT NULL,
    failed      TEXT NOT NULL
);
"""


class Status(StrEnum):
    """Trial status, as in Shallue et al. 2018's data."""

    COMPLETE = "COMPLETE"  # reached the target at an evaluation
    INCOMPLETE = "INCOMPLETE"  # the step budget ended first
    INFEASIBLE = "INFEASIBLE"  # diverged (non-finite or exploding training loss)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Measurement:
    """One value recorded during a trial: ``name`` at training step ``step``."""

    step: int
    name: str
    value: float


@dataclass(frozen=True)
class TrialResult:
    """What one trial produced.

    Attributes:
        index: the trial index in its study (the quasi-random point it ran).
        status: COMPLETE / INCOMPLETE / INFEASIBLE.
        hparams: the hyperparameters it ran with.
        steps_to_result: training steps at the first evaluation that reached the target
            (Shallue et al. 2018, section 3.2); None unless COMPLETE.
        steps_run: training steps actually taken.
        final_metric: the metric at the last evaluation (None if never evaluated / non-finite).
        best_metric: the best metric over the evaluations (None likewise).
        wall_time: seconds, model building to the end of the last evaluation.
        device: the torch device it ran on, e.g. ``"cpu"`` or ``"cuda:0"``.
        seed: the trial's seed (initialisation and batch order).
        error: why it is INFEASIBLE (or None).
        measurements: every (step, name, value) recorded.
    """

    index: int
    status: Status
    hparams: Mapping[str, float]
    steps_to_result: int | None
    steps_run: int
    final_metric: float | None
    best_metric: float | None
    wall_time: float
    device: str
    seed: int
    error: str | None = None
    measurements: tuple[Measurement, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class TrialFailure:
    """A trial attempt that produced no :class:`TrialResult`.

    Attributes:
        index: the trial index in its study.
        error: why: the exception and its traceback, or the engine's account of a lost worker.
    """

    index: int
    error: str


@dataclass(frozen=True)
class StudyRecord:
    """A stored study: its id, definition and the columns extracted from it."""

    id: int
    key: str
    workload: str
    optimizer: str
    batch_size: int
    metric: str
    target: float
    direction: str
    max_steps: int
    max_trials: int
    seed: int
    search_space: Mapping
    definition: Mapping
    created: str


def _canonical(definition: Mapping) -> str:
    try:
        return json.dumps(definition, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"study definition must be finite JSON-serialisable data: {e}") from None


def study_key(definition: Mapping) -> str:
    """The identity of a study: sha256 of its canonical definition JSON."""
    return hashlib.sha256(_canonical(definition).encode()).hexdigest()


def _to_db(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _from_db(value) -> float:
    return math.nan if value is None else float(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """A SQLite file of studies, trials and measurements.

    Args:
        path: the SQLite file; its folder is created when ``create`` is true.
        create: create the file (and schema) if missing; when false a missing file raises
            FileNotFoundError (``status`` / ``export`` of a store that does not exist).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(f"store: no such file {str(self.path)!r}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise ValueError(f"store: {str(self.path)!r} is a directory, expected a SQLite file")
        try:
            # isolation_level=None: we open transactions explicitly (BEGIN IMMEDIATE) so that a trial
            # and its measurements are one atomic write.
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(
                    f"store {str(self.path)!r}: schema version {version}, this nnbench reads {SCHEMA_VERSION}"
                )
            if version == 0:
                tables = {
                    r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                if tables:
                    raise ValueError(
                        f"store {str(self.path)!r}: a SQLite file that is not an nnbench store "
                        f"(tables {sorted(tables)})"
                    )
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            else:
                # Stores written before the failures table existed gain it (additive: older readers
                # ignore it, so the schema version stays).
                self._db.executescript(_SCHEMA)
            # FULL: a finished trial survives even an OS crash, not only a killed process.
            self._db.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as e:
            if hasattr(self, "_db"):
                self._db.close()
            raise ValueError(f"store {str(self.path)!r}: not a readable SQLite file ({e})") from None

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- studies -----------------------------------------------------------------------------
    def ensure_study(self, definition: Mapping, max_trials: int) -> StudyRecord:
        """The study with this definition, created if new; its ``max_trials`` grows to ``max_trials``.

        ``definition`` must hold the keys ``workload, optimizer, batch_size, metric, target,
        direction, max_steps, seed`` and ``search_space`` (a dict), plus anything else that changes
        the study's results; it must not hold the number of trials (extending a study keeps it).
        """
        missing = [k for k in (*_STUDY_COLUMNS, "search_space") if k not in definition]
        if missing:
            raise ValueError(f"study definition lacks {missing}")
        if "max_trials" in definition:
            raise ValueError("study definition must not contain max_trials (extending a study keeps its id)")
        if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 0:
            raise ValueError(f"max_trials must be a non-negative integer, got {max_trials!r}")
        text = _canonical(definition)
        key = hashlib.sha256(text.encode()).hexdigest()
        with self._transaction():
            row = self._db.execute("SELECT id, max_trials FROM studies WHERE key = ?", (key,)).fetchone()
            if row is None:
                values = [definition[c] for c in _STUDY_COLUMNS]
                self._db.execute(
                    f"INSERT INTO studies (key, {', '.join(_STUDY_COLUMNS)}, max_trials, search_space, "
                    f"definition, created) VALUES (?, {', '.join('?' * len(_STUDY_COLUMNS))}, ?, ?, ?, ?)",
                    (key, *values, max_trials, _canonical(definition["search_space"]), text, _now()),
                )
            elif max_trials > row[1]:
                self._db.execute("UPDATE studies SET max_trials = ? WHERE id = ?", (max_trials, row[0]))
        return self.study(key)

    def find_study(self, definition: Mapping) -> StudyRecord | None:
        """The stored study with this definition, or None (nothing is written)."""
        found = self._select_studies("WHERE key = ?", (study_key(definition),))
        return found[0] if found else None

    def study(self, id_or_key: int | str) -> StudyRecord:
        """One study by id or key (ValueError if absent)."""
        column = "id" if isinstance(id_or_key, int) else "key"
        found = self._select_studies(f"WHERE {column} = ?", (id_or_key,))
        if not found:
            raise ValueError(f"store {str(self.path)!r}: no study with {column} {id_or_key!r}")
        return found[0]

    def studies(self) -> list[StudyRecord]:
        """Every study, ordered by workload, optimizer, batch size, id."""
        return self._select_studies("ORDER BY workload, optimizer, batch_size, id")

    def _select_studies(self, where: str, args: tuple = ()) -> list[StudyRecord]:
        cur = self._db.execute(f"SELECT * FROM studies {where}", args)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(names, row, strict=True))
            d["search_space"] = json.loads(d["search_space"])
            d["definition"] = json.loads(d["definition"])
            out.append(StudyRecord(**d))
        return out

    # -- trials ------------------------------------------------------------------------------
    def finished_indices(self, study_id: int) -> set[int]:
        """Trial indices of ``study_id`` already stored (whatever their status; failures are not
        finished)."""
        rows = self._db.execute("SELECT trial_index FROM trials WHERE study_id = ?", (study_id,))
        return {r[0] for r in rows.fetchall()}

    def write_trial(self, study_id: int, result: TrialResult) -> None:
        """Store a finished trial and all its measurements in one transaction.

        A trial index already stored for this study raises ValueError (two sweeps on one study).
        """
        status = Status(result.status)
        if status is Status.COMPLETE and result.steps_to_result is None:
            raise ValueError("a COMPLETE trial needs steps_to_result")
        hparams = _canonical({k: float(v) for k, v in result.hparams.items()})
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO trials (study_id, trial_index, status, hparams, steps_to_result, steps_run, "
                    "final_metric, best_metric, wall_time, device, seed, error, finished) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        study_id,
                        int(result.index),
                        status.value,
                        hparams,
                        None if result.steps_to_result is None else int(result.steps_to_result),
                        int(result.steps_run),
                        _to_db(result.final_metric),
                        _to_db(result.best_metric),
                        float(result.wall_time),
                        str(result.device),
                        int(result.seed),
                        result.error,
                        _now(),
                    ),
                )
                self._db.executemany(
                    "INSERT INTO measurements (study_id, trial_index, step, name, value) VALUES (?, ?, ?, ?, ?)",
                    [(study_id, int(result.index), int(m.step), m.name, _to_db(m.value)) for m in result.measurements],
                )
        except sqlite3.IntegrityError as e:
            if "UNIQUE" in str(e) or "PRIMARY KEY" in str(e):
                raise ValueError(
                    f"store: trial {result.index} of study {study_id} is already stored "
                    "(is another sweep writing the same study?)"
                ) from None
            raise ValueError(f"store: cannot write trial {result.index} of study {study_id}: {e}") from None

    def write_failure(self, study_id: int, failure: TrialFailure) -> None:
        """Record a failed attempt at trial ``failure.index`` of ``study_id`` (the trial stays
        unfinished: a resumed sweep runs it again)."""
        if not isinstance(failure.error, str) or not failure.error:
            raise ValueError("a TrialFailure needs a non-empty error text")
        with self._transaction():
            self._db.execute(
                "INSERT INTO failures (study_id, trial_index, error, failed) VALUES (?, ?, ?, ?)",
                (study_id, int(failure.index), failure.error, _now()),
            )

    def failures(self, study_id: int) -> list[TrialFailure]:
        """Every failed attempt recorded for ``study_id``, oldest first (a trial that failed and was
        later finished keeps its failures here)."""
        rows = self._db.execute(
            "SELECT trial_index, error FROM failures WHERE study_id = ? ORDER BY rowid", (study_id,)
        ).fetchall()
        return [TrialFailure(index=i, error=e) for i, e in rows]

    def trials(self, study_id: int, *, with_measurements: bool = False) -> list[TrialResult]:
        """The stored trials of ``study_id``, by index (measurements loaded on request)."""
        rows = self._db.execute(
            "SELECT trial_index, status, hparams, steps_to_result, steps_run, final_metric, best_metric, "
            "wall_time, device, seed, error FROM trials WHERE study_id = ? ORDER BY trial_index",
            (study_id,),
        ).fetchall()
        out = []
        for index, status, hp, steps, run, final, best, wall, dev, seed, err in rows:
            out.append(
                TrialResult(
                    index=index,
                    status=Status(status),
                    hparams=json.loads(hp),
                    steps_to_result=steps,
                    steps_run=run,
                    final_metric=None if final is None else float(final),
                    best_metric=None if best is None else float(best),
                    wall_time=wall,
                    device=dev,
                    seed=seed,
                    error=err,
                    measurements=self.measurements(study_id, index) if with_measurements else (),
                )
            )
        return out

    def measurements(self, study_id: int, trial_index: int) -> tuple[Measurement, ...]:
        """Every measurement of one trial, ordered by step then insertion."""
        rows = self._db.execute(
            "SELECT step, name, value FROM measurements WHERE study_id = ? AND trial_index = ? "
            "ORDER BY step, rowid",
            (study_id, trial_index),
        ).fetchall()
        return tuple(Measurement(s, n, _from_db(v)) for s, n, v in rows)

    # -- export ------------------------------------------------------------------------------
    def export_csv(self, out: str | os.PathLike, *, measurements: str | os.PathLike | None = None) -> int:
        """Write every trial (one row each, hyperparameters as ``hp_<name>`` columns) to ``out``, and
        optionally every measurement to ``measurements``. Returns the number of trial rows."""
        studies = self.studies()
        rows, hp_names = [], []
        for s in studies:
            for t in self.trials(s.id):
                for name in t.hparams:
                    if name not in hp_names:
                        hp_names.append(name)
                rows.append((s, t))
        fields = [
            "study_id", "workload", "optimizer", "batch_size", "metric", "target", "direction", "max_steps",
            "trial_index", "status", "steps_to_result", "steps_run", "final_metric", "best_metric",
            "wall_time", "device", "seed", "error",
        ] + [f"hp_{n}" for n in hp_names]  # fmt: skip
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(fields)
            for s, t in rows:
                w.writerow(
                    [
                        s.id, s.workload, s.optimizer, s.batch_size, s.metric, s.target, s.direction, s.max_steps,
                        t.index, t.status.value, t.steps_to_result, t.steps_run, t.final_metric, t.best_metric,
                        t.wall_time, t.device, t.seed, t.error,
                    ]  # fmt: skip
                    + [t.hparams.get(n) for n in hp_names]
                )
        if measurements is not None:
            mpath = Path(measurements)
            mpath.parent.mkdir(parents=True, exist_ok=True)
            with mpath.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["study_id", "workload", "optimizer", "batch_size", "trial_index", "step", "name", "value"])
                for s in studies:
                    cur = self._db.execute(
                        "SELECT trial_index, step, name, value FROM measurements WHERE study_id = ? "
                        "ORDER BY trial_index, step, rowid",
                        (s.id,),
                    )
                    for index, step, name, value in cur:
                        w.writerow([s.id, s.workload, s.optimizer, s.batch_size, index, step, name, _from_db(value)])
        return len(rows)

    # -- internals ---------------------------------------------------------------------------
    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (so a trial is written whole or not)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
        return False



# -- leases ------------------------------------------------------------------------------------
class StudyBusy(ValueError):
    """Another process holds the lease of a study: a second sweep would write the same trials."""


def _study_label(definition: Mapping) -> str:
    return f"{definition['workload']}/{definition['optimizer']}/B={definition['batch_size']}"


@contextmanager
def study_leases(path: str | os.PathLike, definitions: Iterable[Mapping]) -> Iterator[None]:
    """Hold an exclusive lease on each study (by definition) of the store at ``path`` for the
    duration of the ``with`` block; raise :class:`StudyBusy` at once, naming the study and its
    holder (pid, host, since when), if another process holds one.

    A lease is an advisory ``flock`` on ``<path>.leases/<study key>.lock``, a file that records its
    holder. The operating system drops the lock when the holder exits or is killed, so a dead sweep
    never blocks the next one; the files are removed on release. Without ``fcntl`` (Windows) no
    lease is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    folder = Path(f"{Path(path)}.leases")
    held: list[tuple[Path, int]] = []
    try:
        for definition in definitions:
            held.append(_acquire(fcntl, folder, definition, path))
        yield
    finally:
        for file, fd in reversed(held):
            file.unlink(missing_ok=True)  # while still locked: a waiting opener then retries
            os.close(fd)
        try:
            folder.rmdir()
        except OSError:  # other sweeps' leases are in it, or it is gone
            pass


def _acquire(fcntl, folder: Path, definition: Mapping, store_path) -> tuple[Path, int]:
    file = folder / f"{study_key(definition)}.lock"
    while True:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder is new, or another sweep just removed it
            folder.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "holder unknown"
            os.close(fd)
            raise StudyBusy(
                f"study {_study_label(definition)} in store {str(store_path)!r} is being written by "
                f"another sweep ({holder}); wait for it to finish or stop it"
            ) from None
        # The holder we waited on may have removed the file between our open and our lock: the
        # lock must be on the file that is at the path now.
        try:
            current = os.stat(file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {_now()}".encode(), 0)
    return file, fd
