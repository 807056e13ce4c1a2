"""``python -m nnbench`` / ``nnbench``: steps-to-target sweeps over batch sizes and optimizers.

    nnbench sweep --quick                        # quick start: teacher_fc, sgd + momentum, B = 16 .. 1024
    nnbench sweep --workload teacher_fc --optimizers sgd momentum adam --batch-sizes 16 64 256 1024 \\
                  --trials 16 --store runs/nnbench.sqlite
    nnbench status --store runs/nnbench.sqlite   # per study: trials by status, steps to result, edge flags
    nnbench export --store runs/nnbench.sqlite --out runs/trials.csv --measurements runs/measurements.csv
    nnbench protocol --optimizers sgd --batch-sizes 16 1024   # search, focused search, seeds (median)
    nnbench workloads                            # the registered workloads
    nnbench compare --store runs/nnbench.sqlite  # NQM fitted on SGD, others predicted (figure + table)
    nnbench import-batch-science DATA/mnist/simple_cnn_base --target 0.01 --store runs/shallue.sqlite
    nnbench export --store runs/nnbench.sqlite --format batch-science runs/batch_science  # Shallue et al.'s layout

    nnbench sweep --engine ray --address auto    # the same sweep on a Ray cluster (pip install "nqm-bench[cluster]")

A sweep stores every trial in the SQLite file as it finishes; running the same command again resumes
it (finished trials are never re-run, failed ones are retried) and a larger ``--trials`` extends its
studies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from nnbench import protocol_cli
from nqm._pipe import quiet_on_broken_pipe

__all__ = ["main", "build_parser"]

DEFAULT_STORE = "runs/nnbench.sqlite"


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (batch sizes, counts of trials and steps)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from nnbench.workloads import WORKLOADS

    parser = argparse.ArgumentParser(
        prog="nnbench",
        description=(
            "Real-network steps-to-target sweeps over batch sizes and optimizers (Shallue et al. 2018; "
            "Zhang et al. 2019, section 4): for each (optimizer, batch size) a quasi-random search "
            "over the hyperparameters, each trial trained until the target metric is first reached. "
            "Results go to a SQLite file; re-running a sweep resumes it."
        ),
        epilog="Quick start (a few minutes on 2 CPU cores, no download): python -m nnbench sweep --quick",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{sweep,protocol,status,export,workloads,compare,import-batch-science}")

    sw = sub.add_parser(
        "sweep",
        help="run (or resume, or extend) a sweep",
        description="Run one study per (optimizer, batch size): quasi-random trials, each trained until "
        "the workload's target is first reached at an evaluation (COMPLETE), its step budget ends "
        "(INCOMPLETE) or its loss diverges (INFEASIBLE). Finished trials in --store are skipped.",
    )
    sw.add_argument("--workload", default="teacher_fc", choices=list(WORKLOADS), metavar="NAME",
                    help=f"workload (default teacher_fc; embedded ones need no download): {', '.join(WORKLOADS)}")
    sw.add_argument("--optimizers", nargs="+", default=["sgd", "momentum"], metavar="NAME",
                    help="optimizers: sgd momentum nesterov adam adam_nomomentum kfac kfac_momentum "
                    "(default: sgd momentum)")
    sw.add_argument("--batch-sizes", nargs="+", type=_positive_int, default=[16, 64, 256, 1024], metavar="B",
                    help="batch sizes (default: 16 64 256 1024)")
    sw.add_argument("--trials", type=_positive_int, default=None,
                    help="quasi-random trials per study (default 16; 8 with --quick)")
    sw.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file of results (default {DEFAULT_STORE})")
    sw.add_argument("--data-dir", default=None,
                    help="local folder of a real data set (MNIST IDX files, cifar-10-batches-py; the text "
                    "file for text_lm_transformer); embedded workloads need none")
    sw.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    sw.add_argument("--quick", action="store_true",
                    help="the workload's quick variant (smaller step budget / evaluation set) and 8 trials")
    sw.add_argument("--seed", type=int, default=0, help="seeds the searches and the trials (default 0)")
    sw.add_argument("--target", type=float, default=None, help="override the workload's target metric value")
    sw.add_argument("--max-steps", type=_positive_int, default=None, help="override the workload's step budget per trial")
    sw.add_argument("--eval-every", type=_positive_int, default=None, help="override the steps between evaluations")
    sw.add_argument("--threads", type=_positive_int, default=None,
                    help="torch CPU threads (default: the workload's choice for one trial at a time, 1 for "
                    "teacher_fc, else torch's default; every core while an ensemble trains): a small model "
                    "alone runs fastest on 1, especially on a busy machine")
    sw.add_argument("--ensemble", type=ensemble_arg, default="auto", metavar="N|auto",
                    help="trials of a study trained at once as one batched ensemble, each with its own "
                    "batches, initialisation and result (default auto: by device and model size; 1: one at a "
                    "time). K-FAC and models with batch norm always run one at a time")
    sw.add_argument("--quiet", action="store_true",
                    help="no progress bars (shown only on a terminal; elsewhere a line per finished study)")
    sw.add_argument("--json", action="store_true", help="print the study summaries as JSON")
    ray = sw.add_argument_group(
        "engine", "where the trials run: 'local' (this process, one trial at a time) or 'ray' (Ray tasks on "
        "a Ray instance started here, or on a cluster with --address; needs pip install \"nqm-bench[cluster]\"). "
        "Results always come back to this process, the only writer of --store.")
    ray.add_argument("--engine", choices=["local", "ray"], default="local", help="(default local)")
    ray.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                     help="ray: the cluster to run on ('auto': the one this machine is a node of; HOST:PORT: "
                     "its head); default: start a Ray instance on this machine for the sweep")
    ray.add_argument("--num-cpus", type=int, default=None, metavar="N",
                     help="ray without --address: CPUs of the Ray instance started here (default: all)")
    ray.add_argument("--cpus-per-trial", type=float, default=None, metavar="C", help="ray: CPUs reserved per trial (default 1)")
    ray.add_argument("--gpus-per-trial", type=float, default=None, metavar="G",
                     help="ray: GPUs reserved per trial, e.g. 0.25 for four trials per GPU (default 0: CPU trials)")
    ray.add_argument("--max-retries", type=int, default=None, metavar="N",
                     help="ray: times a trial whose worker died is resubmitted before it is recorded as failed "
                     "(default 3)")

    st = sub.add_parser("status", help="summarise the studies in a store",
                        description="Per study: trials by status, steps to result (fewest steps over "
                        "COMPLETE trials), best hyperparameters, and '!name=low|high' when the best trial "
                        "sits within 5% of a search-space boundary (widen the space); on a store written by 'nnbench "
                        "protocol', each study's round (search, focus, seeds).")
    st.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file (default {DEFAULT_STORE})")
    st.add_argument("--workload", default=None, help="only this workload's studies")
    st.add_argument("--json", action="store_true", help="print JSON")

    ex = sub.add_parser("export", help="write the trials (and measurements) of a store to CSV, or the "
                        "whole store in Shallue et al.'s batch_science layout",
                        description="Write every trial of a store to a CSV file, one row each (study, "
                        "status, steps to result, hyperparameters as hp_<name> columns), and with "
                        "--measurements every recorded (step, name, value) to another; or, with "
                        "--format batch-science, the whole store in Shallue et al.'s published layout.")
    ex.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file (default {DEFAULT_STORE})")
    ex.add_argument("--out", default=None,
                    help="csv: CSV file for the trials (one row each); batch-science: the folder (or give DIR)")
    ex.add_argument("--measurements", default=None, metavar="CSV",
                    help="csv: also write every measurement (study, trial, step, name, value) to this CSV file")
    ex.add_argument("--format", default="csv", choices=["csv", "batch-science"],
                    help="csv (default), or batch-science: dataset/model/optimizer/batch_size/study.json and "
                    "trial_id/{metadata.json,measurements.csv} under DIR (Shallue et al.'s published layout)")
    ex.add_argument("--workload", default=None, help="batch-science: only this workload's studies")
    ex.add_argument("dir", nargs="?", default=None, metavar="DIR",
                    help="batch-science: the (new or empty) folder to write (same as --out)")

    ib = sub.add_parser(
        "import-batch-science", help="read Shallue et al.'s published measurements (batch_science layout) "
        "into a store",
        description="Read every study under DIR (the whole batch_science archive, one dataset, one "
        "workload dataset/model/optimizer, or one study folder) into --store, keeping study, trial and "
        "measurement identities and statuses. Steps to result is their rule: among COMPLETE trials, the "
        "first evaluation whose --metric column beats --target (strictly), fewest steps over trials. "
        "Studies exported by nnbench carry their own metric and target. Importing again skips stored trials.")
    ib.add_argument("dir", metavar="DIR", help="a folder holding study.json files at any depth")
    ib.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file (default {DEFAULT_STORE})")
    ib.add_argument("--metric", default=None,
                    help="measurements.csv column compared with --target (default val/classification_error)")
    ib.add_argument("--target", type=float, default=None,
                    help="threshold that counts as reached (needed for Shallue et al.'s data, e.g. their goal error)")
    ib.add_argument("--direction", default=None, choices=["min", "max"],
                    help="whether --metric improves down (min) or up (max) (default: from its name; errors "
                    "and losses min, accuracies max)")
    ib.add_argument("--quiet", action="store_true", help="no progress bar (there is none off a terminal)")
    ib.add_argument("--json", action="store_true", help="print the imported studies' summaries as JSON")

    wl = sub.add_parser("workloads", help="list the registered workloads",
                        description="List the registered workloads: metric, target, step budget, "
                        "whether they need --data-dir, and what they train.")
    wl.add_argument("--json", action="store_true", help="print JSON")

    cp = sub.add_parser(
        "compare", help="the noisy quadratic model's prediction beside a stored sweep, with intervals",
        description="Default (--spectrum fit): fit the NQM h_i = 1/i (i = 1..d), C = H, with NO steps scale, "
        "to the SGD studies ONLY (effective dimension d and a batch scale), predict every other optimizer "
        "out of sample from its NQM family (momentum / Nesterov tuned, Adam p=0.5 and K-FAC p=0.75 unless "
        "--power gives a measured one), and print per optimizer measured vs predicted B_crit, S_min, E_min "
        "(McCandlish et al.: S = S_min + E_min / B) with bootstrap intervals (studies, then trials, resampled; "
        "on a store written by 'nnbench protocol' each point is the median over seeds of the best "
        "configuration, and its seeds are resampled) "
        "and the ratio predicted / measured; a measured fit the points cannot support is refused with the "
        "reason. --spectrum paper: the ASSUMED spectrum (the paper's NQM, d = 10^4) with two free scales "
        "(steps, batch size) fitted to --fit-on. Both draw compare_<workload>.png in --out.")
    cp.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file of a sweep (default {DEFAULT_STORE})")
    cp.add_argument("--workload", default=None, help="workload to compare (default: the store's only one)")
    cp.add_argument("--target", type=float, default=None,
                    help="the sweep target, if the store holds sweeps of the workload with several")
    cp.add_argument("--out", default="figures/out", help="folder for the figure (default figures/out)")
    cp.add_argument("--spectrum", choices=("fit", "paper"), default="fit",
                    help="fit: physical fit on SGD only (default); paper: assumed spectrum, two free scales")
    cp.add_argument("--power", nargs="+", default=[], metavar="NAME=P",
                    help="preconditioner power of an optimizer, e.g. adam=0.25 (measured with "
                    "nnbench.instruments.effective_power); default: the family mapping (adam 0.5, kfac 0.75)")
    cp.add_argument("--bootstrap", type=int, default=200, metavar="N",
                    help="bootstrap refits for the intervals (--spectrum fit; default 200)")
    cp.add_argument("--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    cp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    cp.add_argument("--d-range", nargs=2, type=int, default=None, metavar=("LOW", "HIGH"),
                    help="range of the effective dimension d the fit tries, three values per octave "
                    "(default 4 16384)")
    cp.add_argument("--results", default=None, metavar="DIR",
                    help="also write the JSON result to DIR/compare_<workload>.json (e.g. docs/results)")
    cp.add_argument("--fit-on", nargs="+", default=["sgd"], metavar="NAME",
                    help="--spectrum paper only: optimizer(s) whose points fix the two scales, or 'all' "
                    "(default sgd; all optimizers when the store has fewer than 2 SGD points)")
    cp.add_argument("--nqm-target", type=float, default=0.01,
                    help="target risk of the NQM (default 0.01, the paper's)")
    cp.add_argument("--diagnose", action="store_true",
                    help="--spectrum fit: also re-run SGD's fitted configuration (at the stored batch size nearest "
                    "SGD's measured B_crit) for --diagnose-steps steps and print lr * lambda_max at checkpoints "
                    "beside the NQM's stability limit 2: where its fixed-Hessian assumption breaks")
    cp.add_argument("--diagnose-steps", type=int, default=100, metavar="N",
                    help="--diagnose: steps of the SGD run (default 100; checkpoints every N/4 steps)")
    cp.add_argument("--data-dir", default=None, help="--diagnose: local data of a real-data workload")
    cp.add_argument("--json", action="store_true", help="print JSON")
    protocol_cli.add_parser(sub)
    return parser


def ensemble_arg(text: str) -> int | str:
    """An argparse type: ``auto`` or an integer >= 1 (``--ensemble``)."""
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def _summary_dict(s) -> dict:
    d = dataclasses.asdict(s)
    d["trials_done"] = s.trials_done
    return d


def workload_from_args(args):
    """The workload of ``--workload`` with ``--quick``, ``--target``, ``--max-steps`` and (where the
    command has it) ``--eval-every`` applied."""
    from nnbench.workloads import get_workload

    workload = get_workload(args.workload)
    if args.quick:
        workload = workload.quick()
    overrides = {k: v for k, v in (("target", args.target), ("max_steps", args.max_steps),
                                    ("eval_every", getattr(args, "eval_every", None))) if v is not None}
    return workload.replace(**overrides) if overrides else workload


def set_threads(args, workload) -> None:
    """Torch's CPU threads in this process (where the local engine trains) from ``--threads``, by
    default the workload's choice on a CPU."""
    import torch

    from nnbench.device import resolve_device

    threads = args.threads
    if threads is None and resolve_device(args.device).type == "cpu":
        threads = workload.cpu_threads
    if threads is not None:
        torch.set_num_threads(threads)  # process-wide; this process is ours


def local_engine(args, workload):
    """The local engine of a command's flags: torch threads set (``set_threads``), step bars only on
    a terminal, and ensembles' batched products on every core unless ``--threads`` says otherwise."""
    from nnbench.engines.local import LocalEngine

    set_threads(args, workload)
    return LocalEngine(progress=not args.quiet and sys.stderr.isatty(),
                       ensemble_threads=args.threads or os.cpu_count() or 1)


_RAY_FLAGS = {"address": "--address", "num_cpus": "--num-cpus", "cpus_per_trial": "--cpus-per-trial",
              "gpus_per_trial": "--gpus-per-trial", "max_retries": "--max-retries"}


def _engine(args, workload):
    """The engine the sweep's flags ask for (None: the local engine, run_sweep's default)."""
    given = {k: getattr(args, k) for k in _RAY_FLAGS if getattr(args, k) is not None}
    if args.engine == "local":
        if given:
            flags = [_RAY_FLAGS[k] for k in given]
            raise ValueError(f"{' and '.join(flags)} need{'s' if len(flags) == 1 else ''} --engine ray")
        return None
    from nnbench.engines.ray import RayEngine

    try:
        engine = RayEngine(**given, threads=args.threads or workload.cpu_threads)
        engine.worker_device(args.device)  # a device the workers cannot use is refused before anything runs
    except ValueError as e:  # name the flags the user typed
        msg = str(e)
        for key, flag in _RAY_FLAGS.items():
            msg = msg.replace(key, flag)
        raise ValueError(msg) from None
    return engine


def _sweep(args) -> int:
    from nnbench.study import format_table, run_sweep

    workload = workload_from_args(args)
    engine = _engine(args, workload)
    if engine is None:
        engine = local_engine(args, workload)
    trials = args.trials if args.trials is not None else (8 if args.quick else 16)
    try:
        summaries = run_sweep(workload, args.optimizers, args.batch_sizes, trials, args.store,
                              device=args.device, progress=False if args.quiet else None, seed=args.seed,
                              data_dir=args.data_dir, ensemble=args.ensemble, engine=engine)
    except KeyboardInterrupt:
        print(f"nnbench sweep: interrupted; finished trials are in {args.store} and the same command resumes",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([_summary_dict(s) for s in summaries], indent=2))
    else:
        w = workload
        sign = ">=" if w.direction == "max" else "<="
        print(f"{w.name}: steps to {w.eval_split} {w.metric} {sign} {w.target:g} "
              f"(evaluated every {w.eval_every} steps, budget {w.max_steps} steps); store {args.store}")
        print(format_table(summaries))
    failed = [(s, i, e) for s in summaries for i, e in s.failures.items()]
    if failed:
        s, i, error = failed[0]
        print(f"nnbench sweep: {len(failed)} trial(s) failed and are not stored as finished (the same command "
              f"retries them); first, {s.optimizer} B={s.batch_size} trial {i}: "
              f"{error.strip().splitlines()[-1]}", file=sys.stderr)
        return 1
    return 0


def _status(args) -> int:
    from nnbench.study import format_table, summarize_store

    summaries = summarize_store(args.store)
    if args.workload is not None:
        summaries = [s for s in summaries if s.workload == args.workload]
    if args.json:
        print(json.dumps([_summary_dict(s) for s in summaries], indent=2))
    elif not summaries:
        print(f"no studies in {args.store}")
    else:
        print(format_table(summaries))
    return 0


def _export(args) -> int:
    from nnbench.store import Store

    if args.format == "batch-science":
        from nnbench.batch_science import export_batch_science

        if (args.dir is None) == (args.out is None):
            raise ValueError("--format batch-science: give the output folder once, as DIR or --out")
        if args.measurements is not None:
            raise ValueError("--measurements: the batch-science layout already holds every measurement")
        out = args.dir or args.out
        report = export_batch_science(args.store, out, workload=args.workload)
        print(f"wrote {report.studies} studies ({report.trials} trials) under {out}")
        return 0
    if args.out is None or args.dir is not None or args.workload is not None:
        raise ValueError("--format csv: give --out FILE (DIR and --workload belong to --format batch-science)")
    with Store(args.store, create=False) as store:
        n = store.export_csv(args.out, measurements=args.measurements)
    extra = f" and measurements to {args.measurements}" if args.measurements else ""
    print(f"wrote {n} trials to {args.out}{extra}")
    return 0


def _import_batch_science(args) -> int:
    from nnbench.batch_science import import_batch_science
    from nnbench.store import Store
    from nnbench.study import format_table, summarize

    report = import_batch_science(args.dir, args.store, metric=args.metric, target=args.target,
                                  direction=args.direction, progress=not args.quiet and sys.stderr.isatty())
    with Store(args.store, create=False) as store:
        summaries = [summarize(store, i) for i in report.study_ids]
    if args.json:
        print(json.dumps([_summary_dict(s) for s in summaries], indent=2))
        return 0
    print(f"imported {report.studies} studies from {args.dir} into {args.store}: {report.trials_written} "
          f"trials written, {report.trials_skipped} already stored")
    print(format_table(summaries))
    return 0


def _workloads(args) -> int:
    from nnbench.workloads import WORKLOADS

    if args.json:
        print(json.dumps({n: {**w.definition(), "needs_data_dir": w.needs_data_dir,
                              "description": w.description} for n, w in WORKLOADS.items()}, indent=2))
        return 0
    for name, w in WORKLOADS.items():
        sign = ">=" if w.direction == "max" else "<="
        where = "needs --data-dir" if w.needs_data_dir else "embedded"
        print(f"{name:24s} {w.metric} {sign} {w.target:g} within {w.max_steps} steps ({where})\n"
              f"{'':24s} {w.description}")
    return 0


def _powers(items) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--power: expected NAME=P (e.g. adam=0.25), got {item!r}")
    return out


def _compare(args) -> int:
    from nnbench.compare import compare

    fit_on = "all" if args.fit_on == ["all"] else args.fit_on
    powers = _powers(args.power)
    if args.results is not None and args.spectrum == "paper":
        raise ValueError("--results writes the physical comparison (--spectrum fit)")
    if args.diagnose and args.spectrum == "paper":
        raise ValueError("--diagnose applies to --spectrum fit (it re-runs the SGD configuration the fit used)")
    if args.diagnose_steps < 4:
        raise ValueError(f"--diagnose-steps must be an integer >= 4, got {args.diagnose_steps}")
    if args.spectrum == "paper":
        result = compare(args.store, workload=args.workload, target=args.target, out_dir=args.out,
                         spectrum="paper", fit_on=fit_on, nqm_target=args.nqm_target, powers=powers)
    else:
        if args.fit_on != ["sgd"]:
            raise ValueError("--fit-on applies to --spectrum paper; the physical fit uses the SGD studies only")
        if args.bootstrap < 1:
            raise ValueError(f"--bootstrap must be a positive integer, got {args.bootstrap}")
        if not 0 < args.level < 1:
            raise ValueError(f"--level must lie in (0, 1), got {args.level}")
        options = {"n_boot": args.bootstrap, "level": args.level, "seed": args.seed}
        if args.d_range is not None:
            from nnbench.predict import d_grid

            options["d_grid"] = d_grid(*args.d_range)
        result = compare(args.store, workload=args.workload, target=args.target, out_dir=args.out,
                         nqm_target=args.nqm_target, powers=powers, **options)
        if args.results is not None:
            from nnbench.compare_fit import write_results

            path = write_results(result, args.results)
            if not args.json:
                print(f"results: {path}")
    out = result.to_dict()
    if args.diagnose:
        from nnbench.diagnostics import diagnose_store

        sgd = result.measured["sgd"]
        diagnostic = diagnose_store(args.store, workload=result.workload, target=result.target,
                                    batch_size=None if sgd.b_crit is None else sgd.b_crit.value,
                                    steps=args.diagnose_steps, every=args.diagnose_steps // 4,
                                    device="auto", data_dir=args.data_dir)
        out["sharpness_diagnostic"] = diagnostic.to_dict()
    print(json.dumps(out, indent=2) if args.json else
          result.table() + ("\n\n" + diagnostic.table() if args.diagnose else ""))
    return 0


@quiet_on_broken_pipe
def main(argv=None) -> int:
    """Entry point of ``python -m nnbench`` and the ``nnbench`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"sweep": _sweep, "status": _status, "export": _export, "workloads": _workloads,
               "compare": _compare, "import-batch-science": _import_batch_science,
               "protocol": protocol_cli.command}[args.command]
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        # Bad input or a missing optional dependency: a one-line message, not a traceback
        # (argparse's convention: exit status 2).
        print(f"nnbench {args.command}: error: {e}", file=sys.stderr)
        return 2
