"""``python -m figures``: regenerate all figures (or ``--only`` some), report the time each took.

Figures are independent scripts; with ``--jobs N`` (default: one per CPU core) N worker processes
run them side by side, each worker keeping its own memo of library results (``figures._data``),
so a figure computes exactly what it computes when run alone."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from figures import FIGURES
from figures._build import build
from figures._style import DEFAULT_DOCS, DEFAULT_OUT
from nqm._pipe import quiet_on_broken_pipe


def _parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {k:<16} {v}" for k, v in FIGURES.items())
    ap = argparse.ArgumentParser(
        prog="python -m figures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Regenerate the noisy-quadratic-model figures (Zhang et al. 2019 and the "
                    "seed papers' phenomena) as PNG and PDF.",
        epilog=f"figures:\n{lines}\n\nOne figure alone: python -m figures.fig_<name> --help")
    ap.add_argument("--quick", action="store_true",
                    help="fast preview: coarse grids, low-resolution PNG only (no PDF)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output directory (default: figures/out, git-ignored)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these figures")
    ap.add_argument("--docs", nargs="?", type=Path, const=DEFAULT_DOCS, default=None,
                    metavar="DIR", help="also write small PNG copies for the README gallery "
                                        "(default DIR: docs/figures)")
    ap.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="figures built at once, in N processes (default: the number of CPU "
                         "cores; 1: one after the other in this process)")
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    ap.add_argument("--json", action="store_true",
                    help="print a JSON summary (name, seconds, files) instead of text")
    ap.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    return ap


def _context():
    """Workers forked from a fresh server that has imported nqm and matplotlib (a fork of this
    process could inherit numba's running thread pool); spawned where there is no fork."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["figures._build", "figures._data", "figures._style"])
    return ctx


@quiet_on_broken_pipe
def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.list:
        for k, v in FIGURES.items():
            print(f"{k:<16} {v}")
        return 0
    names = list(FIGURES) if not args.only else args.only
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise SystemExit(f"error: unknown figure name(s) {unknown}; choose from {list(FIGURES)}")
    if args.jobs is not None and args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    jobs = min(args.jobs or os.cpu_count() or 1, len(names))
    from tqdm.auto import tqdm

    sub = (["--quick"] if args.quick else []) + ["--out", str(args.out)]
    sub += (["--docs", str(args.docs)] if args.docs is not None else [])
    sub += ["--quiet"]                  # one progress bar: this one
    done, total0 = {}, time.perf_counter()
    # disable=None: a bar only when stderr is a terminal
    bar = tqdm(total=len(names), desc="figures", disable=True if args.quiet or args.json else None,
               leave=False)

    def report(name, dt, files):
        done[name] = {"name": name, "seconds": round(dt, 2), "files": files}
        bar.update()
        if not args.json:
            tqdm.write(f"{name:<16} {dt:7.1f} s  -> {files[0]}")

    if jobs == 1:
        for name in names:
            bar.set_postfix_str(name)
            report(*build(name, sub))
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_context()) as pool:
            for future in as_completed([pool.submit(build, name, sub) for name in names]):
                report(*future.result())
    bar.close()
    total = time.perf_counter() - total0
    figures = [done[name] for name in names]
    if args.json:
        print(json.dumps({"quick": args.quick, "jobs": jobs, "total_seconds": round(total, 2),
                          "figures": figures}, indent=1))
    else:
        print(f"{'total':<16} {total:7.1f} s  ({len(figures)} figures in {args.out}, "
              f"{jobs} at once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
