"""``python -m figures``: regenerate all figures (or ``--only`` some), report the time each took."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from figures import FIGURES
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
                    help="fast low-resolution pass (coarse grids, low dpi)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output directory (default: figures/out, git-ignored)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these figures")
    ap.add_argument("--docs", nargs="?", type=Path, const=DEFAULT_DOCS, default=None,
                    metavar="DIR", help="also write small PNG copies for the README gallery "
                                        "(default DIR: docs/figures)")
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    ap.add_argument("--json", action="store_true",
                    help="print a JSON summary (name, seconds, files) instead of text")
    ap.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    return ap


@quiet_on_broken_pipe
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for k, v in FIGURES.items():
            print(f"{k:<16} {v}")
        return 0
    names = list(FIGURES) if not args.only else args.only
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise SystemExit(f"error: unknown figure name(s) {unknown}; choose from {list(FIGURES)}")
    from tqdm.auto import tqdm

    report, total0 = [], time.perf_counter()
    # disable=None: a bar only when stderr is a terminal
    bar = tqdm(names, desc="figures", disable=True if args.quiet or args.json else None, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        module = importlib.import_module(f"figures.fig_{name}")
        sub = (["--quick"] if args.quick else []) + ["--out", str(args.out)]
        sub += (["--docs", str(args.docs)] if args.docs is not None else [])
        sub += ["--quiet"]              # one progress bar: this one
        t0 = time.perf_counter()
        files = module.main(sub)
        dt = time.perf_counter() - t0
        report.append({"name": name, "seconds": round(dt, 2), "files": [str(f) for f in files]})
        if not args.json:
            tqdm.write(f"{name:<16} {dt:7.1f} s  -> {files[0]}")
    total = time.perf_counter() - total0
    if args.json:
        print(json.dumps({"quick": args.quick, "total_seconds": round(total, 2),
                          "figures": report}, indent=1))
    else:
        print(f"{'total':<16} {total:7.1f} s  ({len(report)} figures in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
