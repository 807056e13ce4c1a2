"""Measured (batch size, steps) points from the command line: ``--points B:STEPS[:LOW:HIGH]`` or a
CSV file with a header (``batch_size,steps`` and optionally ``steps_low,steps_high`` or
``steps_err``). Returns keyword arguments of ``nqm.fit.fit_critical_batch``; every bad value is a
ValueError that names the flag (and the file and line)."""

from __future__ import annotations

import csv
import math

REQUIRED = ("batch_size", "steps")
OPTIONAL = ("steps_low", "steps_high", "steps_err")
_FIELDS = ("batch_size", "steps", "steps_low", "steps_high")
_METAVARS = dict(zip(_FIELDS, ("B", "STEPS", "LOW", "HIGH"), strict=True)) | {"steps_err": "ERR"}


def _number(text: str, what: str, where: str, *, low: float, strict: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(v) or v < low or (strict and v == low):
        raise ValueError(f"{where}: {what} must be {'>' if strict else '>='} {low:g}, got {text!r}")
    return v


def _row(values: dict, where: str, names: dict) -> dict:
    """One point; ``names`` are the words the user typed for each field (metavar or column)."""
    row = {"batch_size": _number(values["batch_size"], names["batch_size"], where, low=1.0,
                                 strict=False)}
    for key in ("steps", *OPTIONAL):
        if values.get(key) not in (None, ""):
            row[key] = _number(values[key], names[key], where, low=0.0, strict=True)
    low, steps, high = (names[k] for k in ("steps_low", "steps", "steps_high"))
    if ("steps_low" in row) != ("steps_high" in row):
        raise ValueError(f"{where}: give both {low} and {high}, or neither")
    if "steps_low" in row and not row["steps_low"] <= row["steps"] <= row["steps_high"]:
        raise ValueError(f"{where}: need {low} <= {steps} <= {high}, got "
                         f"{row['steps_low']:g}, {row['steps']:g}, {row['steps_high']:g}")
    return row


def _collect(rows: list[dict], where: str) -> dict:
    if not rows:
        raise ValueError(f"{where}: no points")
    out = {"batch_sizes": [r["batch_size"] for r in rows], "steps": [r["steps"] for r in rows]}
    for key in OPTIONAL:
        have = [key in r for r in rows]
        if any(have) and not all(have):
            raise ValueError(f"{where}: {key} is given for some points but not for all")
        if all(have):
            out[key] = [r[key] for r in rows]
    if "steps_err" in out and "steps_low" in out:
        raise ValueError(f"{where}: give steps_err or steps_low/steps_high, not both")
    return out


def from_args(texts: list[str]) -> dict:
    """``["64:9000", "256:2600:2400:2800", ...]`` (B:STEPS or B:STEPS:LOW:HIGH)."""
    rows = []
    for text in texts:
        parts = text.split(":")
        where = f"--points {text}"
        if len(parts) not in (2, 4):
            raise ValueError(f"{where}: expected B:STEPS or B:STEPS:LOW:HIGH, e.g. 256:2600")
        rows.append(_row(dict(zip(_FIELDS, parts, strict=False)), where, _METAVARS))
    return _collect(rows, "--points")


def from_csv(path: str) -> dict:
    """A CSV file whose first line names the columns (see the module docstring)."""
    flag = f"--csv {path}"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, skipinitialspace=True)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if not header:
                raise ValueError(f"{flag}: the file is empty")
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ValueError(f"{flag}: line 1 must be a header naming the columns "
                                 f"batch_size,steps[,steps_low,steps_high | steps_err]; "
                                 f"missing {', '.join(missing)} in {','.join(header)!r}")
            unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
            if unknown:
                raise ValueError(f"{flag}: line 1: unknown column(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(REQUIRED + OPTIONAL)})")
            reader.fieldnames = header
            rows = []
            for values in reader:
                where = f"{flag}: line {reader.line_num}"
                if None in values or any(values.get(c) is None for c in header):
                    raise ValueError(f"{where}: expected {len(header)} fields "
                                     f"({','.join(header)})")
                if all((v or "").strip() == "" for v in values.values()):
                    continue
                if (values["steps"] or "").strip() == "":
                    raise ValueError(f"{where}: steps is empty")
                rows.append(_row({k: v.strip() for k, v in values.items()}, where,
                                 {k: k for k in REQUIRED + OPTIONAL}))
    except OSError as err:
        raise ValueError(f"{flag}: cannot read the file ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{flag}: not a UTF-8 text file") from None
    return _collect(rows, flag)
