"""Training throughput (examples/s) of nnbench's trial loop against a plain PyTorch tutorial loop.

Both train the same model (``nnbench.models.build_model`` of the workload, same initialisation) with
the same optimizer (SGD, fixed lr) and batch size on the same in-memory data:

* plain: the usual tutorial loop: ``TensorDataset`` + ``DataLoader(shuffle=True, drop_last=True)``
  over CPU tensors, ``x.to(device)`` / ``y.to(device)`` per batch, ``optimizer.zero_grad()``,
  forward, loss, ``backward()``, ``step()``, and ``running_loss += loss.item()`` every step (as in
  the PyTorch CIFAR-10 tutorial);
* nnbench: ``nnbench.trial.run`` itself (data resident on the device, batches sliced there,
  divergence checks, schedule, periodic evaluation), timed by the trial's own ``train_time``
  measurement (training steps only, evaluation excluded, synchronised).

Warm-up steps are not counted: plain times steps ``warmup+1 .. warmup+steps`` of one loop; nnbench
takes the difference of ``train_time`` between the evaluations at steps ``warmup`` and
``warmup+steps`` (both rounded up to multiples of the workload's ``eval_every``, so the trial
evaluates as often as a real one does; the evaluations themselves are not timed, the training steps
after them are). The two are alternated ``--repeats`` times; medians are reported.

    python benchmarks/bench_nnbench_throughput.py                       # synthetic_images_cnn, auto device
    python benchmarks/bench_nnbench_throughput.py --workload teacher_fc --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from nnbench.data import TensorDataSource
from nnbench.device import resolve_device, synchronize
from nnbench.models import build_model
from nnbench.trial import make_loss, run
from nnbench.workloads import WORKLOADS, build_workload_data, get_workload

LR = 0.01  # small and fixed: both loops must stay finite for the whole run


def _in_memory(workload, num_train: int, num_eval: int, device) -> TensorDataSource:
    """The workload's data as fixed tensors (an online source is sampled once), on ``device``."""
    source = build_workload_data(workload, device="cpu")
    if source.num_train is None:
        x, y = next(source.train_stream(num_train, seed=0))
    else:
        x, y = source.eval_data("train")
        x, y = x[:num_train], y[:num_train]
    vx, vy = source.eval_data("validation")
    return TensorDataSource(name=source.name, task=source.task, num_outputs=source.num_outputs,
                            splits={"train": (x, y), "validation": (vx[:num_eval], vy[:num_eval])},
                            device=device)


def plain_loop(workload, data: TensorDataSource, device, batch_size: int, warmup: int, steps: int) -> float:
    """Examples/s of the tutorial loop over ``data``'s training tensors (kept on the CPU)."""
    x_cpu, y_cpu = (t.cpu() for t in data.eval_data("train"))
    loader = DataLoader(TensorDataset(x_cpu, y_cpu), batch_size=batch_size, shuffle=True, drop_last=True)
    torch.manual_seed(0)
    model = build_model(workload.model, data.input_shape, data.num_outputs, **workload.model_kwargs).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = make_loss(workload, data.task)
    model.train()
    done, running_loss, t0 = 0, 0.0, None
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                synchronize(device)
                t0 = time.perf_counter()
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            done += 1
            if done == warmup + steps:
                break
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - t0)


def nnbench_loop(workload, data: TensorDataSource, device, batch_size: int, warmup: int, steps: int) -> float:
    """Examples/s of ``nnbench.trial.run`` between its evaluations at ``warmup`` and ``warmup+steps``
    (both multiples of the workload's ``eval_every``: the trial evaluates as often as a real one)."""
    unreachable = 2.0 if workload.direction == "max" else -1.0  # train the whole budget
    w = workload.replace(target=unreachable, max_steps=warmup + steps, schedule="constant")
    result = run(w, optimizer="sgd", hparams={"lr": LR}, batch_size=batch_size, seed=0, data=data, device=device)
    if result.status.value == "INFEASIBLE":
        raise RuntimeError(f"the nnbench trial diverged at lr={LR}: {result.error}")
    times = {m.step: m.value for m in result.measurements if m.name == "train_time"}
    return steps * batch_size / (times[warmup + steps] - times[warmup])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="synthetic_images_cnn", choices=[n for n, w in WORKLOADS.items()
                                                                               if not w.needs_data_dir],
                        help="embedded workload whose model and data are used (default synthetic_images_cnn)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300,
                        help="timed steps per run (default 300; rounded up to a multiple of eval_every)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="untimed steps first (default 50; rounded up to a multiple of eval_every)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop, alternated (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--num-train", type=int, default=8192, help="in-memory training examples")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("batch_size", "steps", "warmup", "repeats", "num_train"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.num_train < args.batch_size:
        parser.error("--num-train must be at least --batch-size")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    workload = get_workload(args.workload)
    # whole evaluation intervals, so that nnbench's timer reads fall on evaluations
    k = workload.eval_every
    args.warmup, args.steps = -(-args.warmup // k) * k, -(-args.steps // k) * k
    data = _in_memory(workload, args.num_train, 256, device)

    plain, ours = [], []
    for _ in range(args.repeats):  # alternated, so slow drifts of a shared machine hit both
        plain.append(plain_loop(workload, data, device, args.batch_size, args.warmup, args.steps))
        ours.append(nnbench_loop(workload, data, device, args.batch_size, args.warmup, args.steps))
    p, n = statistics.median(plain), statistics.median(ours)
    figures = {
        "workload": workload.name, "model": workload.model, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "plain_examples_per_s": p, "nnbench_examples_per_s": n, "ratio": n / p,
        "plain_runs": plain, "nnbench_runs": ours,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{workload.name} ({workload.model}), batch {args.batch_size}, SGD lr {LR}; device {device} "
              f"({figures['device_name']}), torch {torch.__version__}, {figures['threads']} CPU threads; "
              f"median of {args.repeats} alternated runs of {args.steps} timed steps after {args.warmup} warm-up")
        print(f"  plain tutorial loop (DataLoader, .to(device), loss.item()): {p:12,.0f} examples/s")
        print(f"  nnbench trial loop (resident data, device-side batches):    {n:12,.0f} examples/s")
        print(f"  ratio nnbench / plain: {n / p:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
