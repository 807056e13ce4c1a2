"""Command line of nqm: ``python -m nqm`` (or ``nqm``). Thin: parse, call the public API, format.

With no subcommand it does the main job: on the paper's noisy quadratic model (d = 10^4, h_i = 1/i,
C = H, target 0.01) it prints tuned steps to target against batch size for SGD, SGD with tuned
momentum and preconditioned SGD (P = H^-0.5), with the information-theoretic bound, and the critical
batch size of each.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

from nqm import _points as points
from nqm import _validate as V
from nqm import schedules
from nqm._pipe import quiet_on_broken_pipe
from nqm.bounds import lower_bound_steps
from nqm.critical import DEFINITIONS, critical_batch, e_min
from nqm.optimizers import stability_limit
from nqm.problem import BINNINGS, NQM
from nqm.risk import risk_curve
from nqm.schedule_opt import FIG3B_BATCH_SIZES, optimize_schedule, schedule_sweep
from nqm.schedules import schedule_risk_curve
from nqm.steps import steps_to_target
from nqm.sweep import PAPER_BATCH_SIZES, PAPER_POWERS, _fmt_b, _fmt_steps, batch_size_sweep
from nqm.tuning import optimal_hyperparameters, optimal_lr

SCHEDULES = ("constant", "linear", "step", "exponential", "cosine")
MAIN_OPTIMIZERS = (("SGD", 0.0, 0.0), ("momentum (tuned)", V.TUNE, 0.0),
                   ("SGD, P=H^-0.5", 0.0, 0.5))


def _tunable(text: str):
    if text == V.TUNE:
        return V.TUNE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or '{V.TUNE}', got {text!r}") from None


def _batch(text: str) -> float:
    try:
        b = float(text)
    except ValueError:
        b = math.nan
    if not b >= 1:
        raise argparse.ArgumentTypeError(f"expected a batch size >= 1 (or inf), got {text!r}")
    return b


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (counts of steps, pieces, bins)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


# API argument names that the CLI sets through a flag of another name (see _flagged).
_FLAG_OF_ARGUMENT = {"n_pieces": "pieces", "warmup_steps": "warmup", "steps": "total_steps"}


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """API argument name -> the flag of ``parser`` that sets it (``batch_size`` -> ``--batch-size``)."""
    flags = {a.dest: a.option_strings[0] for a in parser._actions
             if a.option_strings and a.option_strings[0].startswith("--")}
    for name, dest in _FLAG_OF_ARGUMENT.items():
        if name not in flags and dest in flags:
            flags[name] = flags[dest]
    return flags


def _flagged(message: str, flags: dict[str, str]) -> str:
    """An error of the Python API in the words of the command line: the argument a message starts
    with (``decay_factor must be ...``) and every ``name=value`` become the flag the user typed."""

    def flag(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return flags.get(name, name)

    return re.sub(r"^([a-z]\w*)\b|\b([a-z]\w*)(?==)", flag, message)


def _fraction(high: float = 1.0):
    """A number in (0, high): a level (high = 1) or a positive fraction (high = inf)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not 0.0 < v < high:
            raise argparse.ArgumentTypeError(f"expected a number in (0, {high:g}), got {text!r}")
        return v
    return parse


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    """Problem and output options, accepted before and after the subcommand. On subcommands the
    defaults are suppressed: argparse would otherwise overwrite an option given before the
    subcommand (``nqm --d 1000 sweep``) with the subcommand's default."""

    def dflt(value):
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("problem (default: the paper's)")
    g.add_argument("--problem", choices=["paper", "power-law"], default=dflt("paper"),
                   help="paper: h_i = 1/i, C = H, theta_0 ~ N(0, I); power-law: h_i = i^-a, "
                        "c_i = h_i^q (default: paper)")
    g.add_argument("--d", type=_int_at_least(1), default=dflt(10_000), help="dimension (default 10000)")
    g.add_argument("--a", type=float, default=dflt(1.0), help="power-law exponent of h (default 1)")
    g.add_argument("--q", type=float, default=dflt(1.0), help="c_i = h_i^q (default 1, i.e. C = H)")
    g.add_argument("--bins", type=_int_at_least(1), default=dflt(100), help="number of bins (default 100)")
    g.add_argument("--binning", choices=BINNINGS, default=dflt("accurate"),
                   help="accurate (mean curvature per log-spaced bin, default), official (the "
                        "authors' notebook, rounds curvatures down), none (unbinned, exact, slower)")
    g.add_argument("--target", type=float, default=dflt(0.01), help="target risk (default 0.01)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", default=dflt(False),
                   help="print JSON instead of a table")
    o.add_argument("--quiet", action="store_true", default=dflt(False), help="no progress bar (drawn only on a terminal)")


def _optimizer_args(p: argparse.ArgumentParser, momentum_default="0", tunable=False) -> None:
    p.add_argument("--momentum", type=_tunable if tunable else float,
                   default=_tunable(momentum_default) if tunable else float(momentum_default),
                   help="momentum beta in [0, 1)" + (" or 'tune'" if tunable else "")
                        + f" (default {momentum_default})")
    p.add_argument("--nesterov", action="store_true", help="Nesterov instead of heavy-ball momentum")
    p.add_argument("--power", type=_tunable if tunable else float, default=0.0,
                   help="preconditioner P = H^-power, power in [0, 1]"
                        + (" or 'tune'" if tunable else "") + " (default 0)")


def _ema_arg(p: argparse.ArgumentParser, tunable=False) -> None:
    p.add_argument("--ema", type=_tunable if tunable else float, default=None,
                   help="decay gamma in [0, 1) of an exponential moving average of the iterates, "
                        "on which the risk is measured" + (" ('tune': tuned with lr)" if tunable
                                                           else "") + " (default: none)")


def _schedule_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("schedule")
    g.add_argument("--schedule", choices=SCHEDULES, default="linear",
                   help="constant; linear (Shallue et al.: lr -> lr * decay-factor over "
                        "decay-steps, default); step (x factor at each of --boundaries); "
                        "exponential (lr * decay-rate^(t / decay-steps)); cosine (to lr * final-fraction)")
    g.add_argument("--lr", type=float, required=True, help="initial learning rate")
    g.add_argument("--total-steps", type=_int_at_least(1), required=True,
                   help="length T of the schedule")
    g.add_argument("--decay-steps", type=_int_at_least(1), help="steps of the decay (default: T)")
    g.add_argument("--decay-factor", type=float, default=0.01,
                   help="linear: final rate / lr (default 0.01)")
    g.add_argument("--boundaries", type=_int_at_least(1), nargs="+", default=[],
                   help="step: steps at which the rate is multiplied by --factor")
    g.add_argument("--factor", type=float, default=0.1, help="step: factor (default 0.1)")
    g.add_argument("--decay-rate", type=float, default=0.1,
                   help="exponential: factor per decay-steps (default 0.1)")
    g.add_argument("--staircase", action="store_true", help="exponential: integer t / decay-steps")
    g.add_argument("--final-fraction", type=float, default=0.0,
                   help="cosine: final rate / lr (default 0)")
    g.add_argument("--warmup", type=_int_at_least(0), default=0,
                   help="linear warmup steps before the schedule (default 0)")
    g.add_argument("--at", type=_int_at_least(0), nargs="+",
                   help="also print the risk after these step counts (default: T only)")


def _make_schedule(args):
    T = args.total_steps
    n = args.decay_steps if args.decay_steps is not None else T
    if args.schedule == "constant":
        s = schedules.constant(args.lr, T)
    elif args.schedule == "linear":
        s = schedules.linear_decay(args.lr, decay_factor=args.decay_factor, decay_steps=n,
                                   steps=T)
    elif args.schedule == "step":
        s = schedules.step_decay(args.lr, boundaries=args.boundaries, factor=args.factor, steps=T)
    elif args.schedule == "exponential":
        s = schedules.exponential_decay(args.lr, decay_rate=args.decay_rate, decay_steps=n,
                                        steps=T, staircase=args.staircase)
    else:
        s = schedules.cosine_decay(args.lr, decay_steps=n, steps=T,
                                   final_fraction=args.final_fraction)
    return schedules.warmup(s, args.warmup) if args.warmup else s


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nqm",
        description="The noisy quadratic model of Zhang et al. 2019, computed exactly: how batch "
                    "size, learning rate, momentum and preconditioning change the number of "
                    "steps to reach a target loss. Without a subcommand: steps vs batch size and "
                    "the critical batch size for SGD, tuned momentum and preconditioned SGD on the "
                    "paper's problem.",
        epilog="Examples:  python -m nqm   |   python -m nqm steps --lr 0.5 --batch-size 1024   |   "
               "python -m nqm sweep --momentum tune --json   |   "
               "python -m nqm critical-batch --points 64:9000 256:2600 1024:1100 4096:700   |   "
               "python -m nqm optimize-schedule --batch-size 16   |   "
               "python -m nqm schedule-risk --batch-size 64 --lr 1 --total-steps 20000 "
               "--decay-factor 0.01   |   python -m nqm tune --batch-size 16 --momentum 0 "
               "--ema tune")
    _common(parser, top=True)
    parser.set_defaults(command_parser=parser)
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = _command(sub, "risk", "expected risk after t steps (a risk curve)",
                 "The exact expected risk after each of --steps updates with constant "
                 "hyperparameters (closed form; paper eq. 4 for SGD), and its steady state.")
    _common(p)
    p.add_argument("--lr", type=float, required=True, help="learning rate")
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B (or inf)")
    p.add_argument("--steps", type=_int_at_least(0), nargs="+", default=[0, 10, 100, 1000, 10000],
                   help="step counts to evaluate (default 0 10 100 1000 10000)")
    _optimizer_args(p)
    _ema_arg(p)

    p = _command(sub, "steps", "exact steps to target for given hyperparameters",
                 "The exact number of steps until the expected risk first reaches --target, at "
                 "fixed lr, batch size, momentum, preconditioner power (and EMA decay).")
    _common(p)
    p.add_argument("--lr", type=float, required=True, help="learning rate")
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B (or inf)")
    _optimizer_args(p)
    _ema_arg(p)

    p = _command(sub, "optimal-lr", "the learning rate minimising steps (momentum fixed)",
                 "The constant learning rate that minimises the exact steps to --target at one "
                 "batch size, momentum and power held fixed (paper section 3.6.1).")
    _common(p)
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B (or inf)")
    _optimizer_args(p)
    _ema_arg(p)

    p = _command(sub, "tune", "optimal lr and momentum (and power with --power tune; "
                              "lr and EMA decay with --momentum 0 --ema tune)",
                 "Jointly optimal learning rate and momentum at one batch size (paper section "
                 "3.6.1, Fig. 12); --power tune also tunes the preconditioner power, --momentum 0 "
                 "--ema tune tunes the decay of an average of the iterates instead of momentum.")
    _common(p)
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B (or inf)")
    _optimizer_args(p, momentum_default=V.TUNE, tunable=True)
    _ema_arg(p, tunable=True)

    p = _command(sub, "sweep", "tuned steps for many batch sizes and powers (paper Fig. 3a)",
                 "Steps to --target against batch size, every cell with its optimal constant "
                 "learning rate (and momentum with --momentum tune), for each preconditioner "
                 "power, with the information-theoretic lower bound (paper Fig. 3a).")
    _common(p)
    p.add_argument("--batch-sizes", type=_batch, nargs="+", default=list(PAPER_BATCH_SIZES),
                   help="batch sizes (default 2^0 .. 2^21)")
    p.add_argument("--powers", type=float, nargs="+", default=list(PAPER_POWERS),
                   help="preconditioner powers (default 0 0.25 0.5 0.75)")
    p.add_argument("--momentum", type=_tunable, default=0.0,
                   help="0 (SGD, default), a fixed beta, or 'tune'")
    p.add_argument("--nesterov", action="store_true", help="Nesterov instead of heavy ball")
    _ema_arg(p, tunable=True)

    p = _command(sub, "schedule-risk", "exact risk of a learning-rate schedule (linear "
                                       "decay, step, exponential, cosine, warmup)",
                 "The exact expected risk after a learning-rate schedule of --total-steps steps "
                 "(and after each of --at); warns when the rate of some steps is above the "
                 "stability limit.")
    _common(p)
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B (or inf)")
    _schedule_args(p)
    _optimizer_args(p)
    _ema_arg(p)

    p = _command(sub, "optimize-schedule", "fewest steps with an optimized piecewise-constant "
                                           "schedule (paper section 3.6.2, Fig. 3c)",
                 "The fewest steps to --target with a learning-rate schedule of --pieces "
                 "equal-length constant pieces, each rate optimised (paper section 3.6.2), beside "
                 "the best constant rate.")
    _common(p)
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B")
    p.add_argument("--pieces", type=_int_at_least(1), default=50, help="number of pieces K (default 50)")
    _optimizer_args(p)
    _ema_arg(p)

    p = _command(sub, "schedule-sweep", "optimized-schedule steps for many batch sizes and "
                                        "powers (Fig. 3b, final rate vs B: Fig. 13)",
                 "optimize-schedule for every batch size and preconditioner power (paper Fig. 3b; "
                 "the final rate against batch size is Fig. 13).")
    _common(p)
    p.add_argument("--batch-sizes", type=_batch, nargs="+", default=list(FIG3B_BATCH_SIZES),
                   help="batch sizes (default 2^2, 2^4, .., 2^20)")
    p.add_argument("--powers", type=float, nargs="+", default=list(PAPER_POWERS),
                   help="preconditioner powers (default 0 0.25 0.5 0.75)")
    p.add_argument("--pieces", type=_int_at_least(1), default=10, help="number of pieces K (default 10)")
    p.add_argument("--momentum", type=float, default=0.0, help="fixed momentum (default 0)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov instead of heavy ball")
    _ema_arg(p)

    p = _command(sub, "critical-batch", "critical batch size (exact limits, or fitted to "
                                        "measured points with --points or --csv)",
                 "The critical batch size of the model, from the exact limits S_min (B -> inf) "
                 "and E_min (B -> 0) or by --definition; with --points, fitted to measured "
                 "(batch size, steps) pairs (McCandlish et al. 2018).")
    _common(p)
    _optimizer_args(p, tunable=True)
    p.add_argument("--definition", choices=DEFINITIONS, default="mccandlish",
                   help="mccandlish: E_min / S_min (default); perfect_scaling: largest B with "
                        "B S(B) <= (1 + tol) E_min; saturation: smallest B with "
                        "S(B) <= (1 + tol) S_min")
    p.add_argument("--tolerance", type=float, default=0.1, help="tol of the definitions (0.1)")
    g = p.add_argument_group("measured points: fit S = S_min + E_min / B with intervals instead")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--points", nargs="+", metavar="B:STEPS[:LOW:HIGH]",
                     help="batch size:steps, optionally with an interval LOW..HIGH around the "
                          "steps at --points-level")
    src.add_argument("--csv", metavar="FILE",
                     help="CSV with a header: batch_size,steps and optionally steps_low,steps_high "
                          "(an interval at --points-level) or steps_err (a standard error); "
                          "repeated batch sizes are repeated measurements")
    g.add_argument("--level", type=_fraction(), default=0.95,
                   help="confidence level of the fitted intervals (default 0.95)")
    g.add_argument("--points-level", type=_fraction(), default=0.6827,
                   help="level of the given LOW..HIGH intervals (default 0.6827: +- 1 standard "
                        "error)")
    g.add_argument("--overhead", type=_fraction(math.inf), default=0.2,
                   help="Zhang et al. 2024's critical batch: steps this fraction over perfect "
                        "scaling (default 0.2)")

    p = _command(sub, "lower-bound", "information-theoretic bound d / (2 B target)",
                 "The information-theoretic lower bound on the steps to --target at batch size B "
                 "(paper section 3.5): d / (2 B target), d = sum c_i / h_i the effective "
                 "dimension.")
    _common(p)
    p.add_argument("--batch-size", type=_batch, required=True, help="batch size B")
    return parser


def _command(sub, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` in the list of commands, ``description`` atop its --help."""
    p = sub.add_parser(name, help=summary, description=description)
    p.set_defaults(command_parser=p)      # errors name the flags of this subcommand
    return p


def _problem(args) -> NQM:
    bins = None if args.binning == "none" else args.bins
    if args.problem == "paper":
        return NQM.paper(args.d, bins=bins, binning=args.binning)
    return NQM.power_law(args.d, a=args.a, q=args.q, bins=bins, binning=args.binning)


def _emit(args, data: dict, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def main_columns(problem: NQM, target: float, progress=lambda: None) -> tuple:
    """The main job's numbers: for each of MAIN_OPTIMIZERS its sweep over PAPER_BATCH_SIZES and
    its critical batch size, as (sweeps, crits). The columns are independent and run side by side
    on threads (their kernels release the GIL), each E_min (a serial search, which the column's
    critical_batch then takes from the problem's memo) beside them from the start: every number
    is the one computed alone. ``progress()`` is called after each sweep and critical batch."""

    def column(mom, power):
        sweep = batch_size_sweep(problem, batch_sizes=PAPER_BATCH_SIZES, powers=[power],
                                 momentum=mom, target=target)
        progress()
        crit = critical_batch(problem, momentum=mom, power=power, target=target)
        progress()
        return sweep, crit

    with ThreadPoolExecutor(2 * len(MAIN_OPTIMIZERS)) as pool:
        limits = [pool.submit(e_min, problem, momentum=mom, power=power, target=target)
                  for _label, mom, power in MAIN_OPTIMIZERS]
        columns = [pool.submit(column, mom, power) for _label, mom, power in MAIN_OPTIMIZERS]
        sweeps, crits = zip(*(f.result() for f in columns), strict=True)
        for f in limits:
            f.result()
    return sweeps, crits


def _main_job(args) -> None:
    from tqdm import tqdm

    problem = _problem(args)
    with tqdm(total=2 * len(MAIN_OPTIMIZERS), disable=not _bars(args),
              desc="nqm", file=sys.stderr) as bar:
        sweeps, crits = main_columns(problem, args.target, bar.update)
    bound = sweeps[0].lower_bound
    lines = [f"Steps to target {args.target:g} on {problem!r}",
             "(every cell with its optimal constant learning rate; momentum tuned too)", ""]
    head = f"{'batch size':>10}" + "".join(f" | {lab:>17}" for lab, _, _ in MAIN_OPTIMIZERS) + \
        f" | {'lower bound':>11}"
    lines += [head, "-" * len(head)]
    for j, b in enumerate(PAPER_BATCH_SIZES):
        lines.append(f"{_fmt_b(b):>10}" + "".join(f" | {s.steps[0, j]:>17d}" for s in sweeps)
                     + f" | {_fmt_steps(bound[j]):>11}")
    lines += ["", "Critical batch size B_crit = E_min / S_min (McCandlish et al. 2018):"]
    for (lab, _, _), c in zip(MAIN_OPTIMIZERS, crits, strict=True):
        lines.append(f"  {lab:>17}: B_crit = {c.value:10.1f}   (S_min = {c.s_min:.0f} steps, "
                     f"E_min = {c.e_min:.4g} examples)")
    data = {"problem": problem.name, "target": args.target,
            "batch_sizes": list(PAPER_BATCH_SIZES), "lower_bound": bound.tolist(),
            "optimizers": [{"name": lab, "steps": s.steps[0].tolist(), "lr": s.lr[0].tolist(),
                            "momentum": s.momentum[0].tolist(), "critical_batch": c.to_dict()}
                           for (lab, _, _), s, c in zip(MAIN_OPTIMIZERS, sweeps, crits, strict=True)]}
    _emit(args, data, "\n".join(lines))


def _fmt_result(obj) -> str:
    d = obj.to_dict()
    width = max(16, *map(len, d))
    return "\n".join(f"{k:>{width}}: {v}" for k, v in d.items())


def _bars(args) -> bool:
    """Progress bars only for a person watching: stderr a terminal, neither --quiet nor --json."""
    return not (args.quiet or args.json) and sys.stderr.isatty()


def _warn_unstable(args, problem: NQM, sched) -> None:
    """A schedule whose rate exceeds the stability limit in some steps: the risk grows there
    (possibly to a huge finite number), which the printed risk alone does not say."""
    lr_max = stability_limit(problem, momentum=args.momentum, nesterov=args.nesterov,
                             power=args.power)
    over = sched.lr >= lr_max
    if over.any():
        print(f"{args.command_parser.prog}: warning: the learning rate (up to "
              f"{sched.lr.max():.4g}) is at or above the stability limit {lr_max:.4g} "
              f"(momentum {args.momentum:g}, power {args.power:g}) in "
              f"{int(sched.lengths[over].sum())} of {sched.steps} steps: the risk grows there",
              file=sys.stderr)


@quiet_on_broken_pipe
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            _main_job(args)
            return 0
        if args.command == "critical-batch" and (args.points or args.csv):
            flag = "--points" if args.points else f"--csv {args.csv}"
            pts = points.from_args(args.points) if args.points else points.from_csv(args.csv)
            from nqm.fit import CriticalBatchFitWarning, fit_critical_batch  # scipy: only for a fit

            try:
                with warnings.catch_warnings():        # the table and the JSON carry them
                    warnings.simplefilter("ignore", CriticalBatchFitWarning)
                    fit = fit_critical_batch(**pts, points_level=args.points_level,
                                             level=args.level, overhead=args.overhead)
            except ValueError as err:
                raise ValueError(f"{flag}: {err}") from None
            _emit(args, fit.to_dict(), fit.table())
            return 0
        problem = _problem(args)
        if args.command == "risk":
            c = risk_curve(problem, args.steps, lr=args.lr, batch_size=args.batch_size,
                           momentum=args.momentum, nesterov=args.nesterov, power=args.power,
                           ema=args.ema)
            text = "\n".join([f"{'steps':>12} | {'risk':>14}"]
                             + [f"{int(t):>12} | {r:>14.8g}" for t, r in zip(c.steps, c.risk, strict=True)]
                             + [f"{'inf':>12} | {c.steady_state:>14.8g}"])
            _emit(args, c.to_dict(), text)
        elif args.command == "steps":
            r = steps_to_target(problem, lr=args.lr, batch_size=args.batch_size,
                                momentum=args.momentum, nesterov=args.nesterov, power=args.power,
                                ema=args.ema, target=args.target)
            _emit(args, r.to_dict(), _fmt_result(r))
        elif args.command == "optimal-lr":
            r = optimal_lr(problem, batch_size=args.batch_size, momentum=args.momentum,
                           nesterov=args.nesterov, power=args.power, ema=args.ema,
                           target=args.target)
            _emit(args, r.to_dict(), _fmt_result(r))
        elif args.command == "tune":
            r = optimal_hyperparameters(problem, batch_size=args.batch_size,
                                        momentum=args.momentum, nesterov=args.nesterov,
                                        power=args.power, ema=args.ema, target=args.target)
            _emit(args, r.to_dict(), _fmt_result(r))
        elif args.command == "sweep":
            s = batch_size_sweep(problem, batch_sizes=args.batch_sizes, powers=args.powers,
                                 momentum=args.momentum, nesterov=args.nesterov, ema=args.ema,
                                 target=args.target)
            _emit(args, s.to_dict(), s.table())
        elif args.command == "schedule-risk":
            sched = _make_schedule(args)
            _warn_unstable(args, problem, sched)
            at = sorted(set(args.at or []) | {sched.steps})
            c = schedule_risk_curve(problem, sched, batch_size=args.batch_size,
                                    momentum=args.momentum, nesterov=args.nesterov,
                                    power=args.power, ema=args.ema, steps=at)
            text = "\n".join([repr(sched), f"{'steps':>12} | {'risk':>14}"]
                             + [f"{int(t):>12} | {r:>14.8g}" for t, r in zip(c.steps, c.risk, strict=True)])
            _emit(args, c.to_dict(), text)
        elif args.command == "optimize-schedule":
            r = optimize_schedule(problem, batch_size=args.batch_size, n_pieces=args.pieces,
                                  momentum=args.momentum, nesterov=args.nesterov,
                                  power=args.power, ema=args.ema, target=args.target)
            lines = [f"{'steps':>16}: {r.steps}  (best constant rate {r.constant_lr:.4g}: "
                     f"{r.constant_steps}; lower bound {r.lower_bound:.6g})",
                     f"{'risk':>16}: {r.risk:.8g} (target {r.target:g}; "
                     f"{r.steps - 1} steps: {r.risk_before:.8g})",
                     f"{'rate bound':>16}: {r.lr_max:.6g} (stability limit)",
                     f"{'pieces':>16}: {r.schedule.n_pieces} of "
                     f"{r.schedule.lengths.min()}-{r.schedule.lengths.max()} steps",
                     f"{'rates':>16}: " + " ".join(f"{x:.4g}" for x in r.schedule.lr)]
            _emit(args, r.to_dict(), "\n".join(lines))
        elif args.command == "schedule-sweep":
            s = schedule_sweep(problem, batch_sizes=args.batch_sizes, powers=args.powers,
                               n_pieces=args.pieces, momentum=args.momentum,
                               nesterov=args.nesterov, ema=args.ema, target=args.target,
                               progress=_bars(args))
            _emit(args, s.to_dict(), s.table())
        elif args.command == "critical-batch":
            r = critical_batch(problem, momentum=args.momentum, nesterov=args.nesterov,
                               power=args.power, target=args.target, definition=args.definition,
                               tolerance=args.tolerance)
            _emit(args, r.to_dict(), "\n".join(f"{k:>16}: {v}" for k, v in r.to_dict().items()
                                               if v is not None))
        elif args.command == "lower-bound":
            r = lower_bound_steps(problem, batch_size=args.batch_size, target=args.target)
            _emit(args, r.to_dict(), _fmt_result(r))
    except ValueError as err:
        cmd = args.command_parser
        cmd.exit(2, f"{cmd.prog}: error: {_flagged(str(err), _flags(cmd))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

