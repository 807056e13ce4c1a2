"""Shared look and plumbing of the figure scripts: command line, matplotlib style, colours, log2
axes, saving PNG + PDF (and an optional small PNG copy for the README gallery)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")                       # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
DEFAULT_DOCS = Path(__file__).resolve().parent.parent / "docs" / "figures"

STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.framealpha": 0.9,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "figure.constrained_layout.use": True,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,                     # editable text in the PDFs
}

# one colour per preconditioner power, the same in every figure (paper: p in {0, .25, .5, .75})
POWER_COLORS = {0.0: "#1f77b4", 0.25: "#ff7f0e", 0.5: "#2ca02c", 0.75: "#d62728"}
SEQUENTIAL = "viridis"


def power_color(p: float) -> str:
    return POWER_COLORS.get(float(p), "#555555")


def power_label(p: float) -> str:
    return f"p = {float(p):g}"


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The command line every figure script shares (``python -m figures.fig_<name> --help``)."""
    ap = argparse.ArgumentParser(prog=f"python -m figures.fig_{name}", description=description)
    ap.add_argument("--quick", action="store_true",
                    help="fast low-resolution pass (coarse grids, low dpi), for tests and previews")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"directory for {name}.png and {name}.pdf (default: figures/out)")
    ap.add_argument("--docs", type=Path, default=None, metavar="DIR",
                    help="also write a small PNG copy (README gallery) into DIR, e.g. docs/figures")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


@contextlib.contextmanager
def context():
    """Apply the shared style while a figure is built and saved (no global rcParams change)."""
    with plt.rc_context(STYLE):
        yield


def subplots(ncols: int = 1, nrows: int = 1, *, width: float | None = None,
             height: float = 3.6, **kw):
    width = width if width is not None else 4.4 * ncols + 0.4
    return plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False, **kw)


def log2_axis(ax, which: str = "x", *, every: int | None = None) -> None:
    """Log scale base 2 with ticks 2^k (every ``every``-th power; chosen from the range if None)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=2)
    lo, hi = (ax.get_xlim() if which == "x" else ax.get_ylim())
    span = np.log2(max(hi, 1e-300)) - np.log2(max(lo, 1e-300))
    if every is None:
        every = max(1, int(np.ceil(span / 9)))
    axis.set_major_locator(LogLocator(base=2.0 ** every, numticks=40))
    axis.set_major_formatter(FuncFormatter(
        lambda v, _p: f"$2^{{{int(round(np.log2(v)))}}}$" if v > 0 else ""))
    axis.set_minor_formatter(NullFormatter())
    axis.set_minor_locator(LogLocator(base=2.0, numticks=80) if every > 1 else
                           LogLocator(base=2.0, subs=(), numticks=2))


def steps_vs_batch(ax, B, powers, solid, dashed, lower_bound, *, solid_label: str,
                   dashed_label: str, target: float = 0.01, ncol: int = 1) -> None:
    """Steps to target vs batch size, one colour per power: ``solid`` (rows per power, with
    markers) against ``dashed``, and the lower bound d / (2 B target); base-2 log axes (Fig. 3a,
    3b, EMA)."""
    for i, p in enumerate(powers):
        c = power_color(p)
        ax.plot(B, solid[i], "-o", color=c, label=f"{power_label(p)}, {solid_label}")
        ax.plot(B, dashed[i], "--", color=c, label=f"{power_label(p)}, {dashed_label}")
    ax.plot(B, lower_bound, "k--", lw=1.2, label="lower bound d/(2 B target)")
    ax.set_xlabel("batch size (examples)")
    ax.set_ylabel(f"steps to target risk {target:g}")
    ax.set_ylim(bottom=1.0)
    log2_axis(ax, "x", every=2)
    log2_axis(ax, "y")
    ax.legend(ncol=ncol, fontsize=7, loc="lower left")


def log10_axis(ax, which: str = "y") -> None:
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")


def note(fig, text: str) -> None:
    """A one-line caption under the figure (setting, binning, what cannot be modelled)."""
    fig.text(0.5, -0.01, text, ha="center", va="top", fontsize=7.5, color="#333333", wrap=True)


def problem_note(problem) -> str:
    return f"NQM: {problem.name}; risk = expected excess loss (dimensionless)"


def save(fig, out: Path, name: str, *, quick: bool = False, docs: Path | None = None) -> list[Path]:
    """Write ``out/name.png`` and ``out/name.pdf`` (``--quick``: a low-resolution PNG only; the
    PDF's layout and fonts cost as much as the PNG) and ``docs/name.png``, small; close ``fig``.
    Returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png"] + ([] if quick else [out / f"{name}.pdf"])
    fig.savefig(paths[0], dpi=70 if quick else 150)
    if not quick:
        fig.savefig(paths[1])
    if docs is not None:
        docs = Path(docs)
        docs.mkdir(parents=True, exist_ok=True)
        paths.append(docs / f"{name}.png")
        _save_small_png(fig, paths[-1])
    plt.close(fig)
    return paths


def _save_small_png(fig, path: Path) -> None:
    """A README-gallery PNG: 80 dpi, quantised to a 256-colour palette (typically < 100 KB)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=80, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True)


def progress(iterable, *, quiet: bool, desc: str, total: int | None = None):
    """tqdm progress bar on a terminal (none elsewhere, nor with --quiet)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=True if quiet else None, leave=False)
