"""Adam's effective preconditioner power on ``linear_ls``, measured along its own training run.

For each batch size, train the linear model with Adam at the best hyperparameters of that batch size's
study in a sweep store (``benchmarks/bench_compare_linear_ls.py``) and, at a few checkpoints up to its
steps to result, measure p = 1 - slope of log eig(P^1/2 H P^1/2) against log eig(H)
(``nnbench.instruments.power_from_spectra`` on every eigenvalue: with 512 parameters both matrices are
formed densely, P^1/2 as ``sqrt_apply`` of the identity, instead of Lanczos). H is the exact Hessian
(the workload's exact-risk design); P is Adam's bias-corrected second moment
(``nnbench.instruments.adam_preconditioner``).

    python benchmarks/measure_power_linear_ls.py --store runs/compare_linear_ls.sqlite [--json]

Why p can differ from 0.5: Adam's second moment is E[g^2] = c / B + (h theta)^2 per weight. When the
noise term dominates (small B), c ~ lambda gives P ~ lambda^-1/2, p = 0.5; when the signal dominates
(large B), P ~ 1 / (h |theta|) depends on each weight's distance to the minimum, which scatters the
preconditioned curvatures and weakens the rank-paired compression (a trial run at lr 0.05, beta1 0.9,
beta2 0.99 gave p = 0.52 at B = 8 and 0.15-0.17 at B = 8192).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from nnbench.instruments import adam_preconditioner, power_from_spectra
from nnbench.optim import build_optimizer
from nnbench.study import summarize_store
from nnbench.workloads import build_workload_data, get_workload


def measure(source, hparams: dict, batch_size: int, steps: int, checkpoints=(0.25, 0.5, 1.0), seed: int = 0):
    """[(step, EffectivePower)] along one Adam run with ``hparams`` at ``batch_size`` (float64)."""
    torch.manual_seed(seed)
    dim, k = source.input_shape[0], source.num_outputs
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(dim, k, bias=False)).double()
    opt = build_optimizer("adam", model, **hparams)
    gen = torch.Generator().manual_seed(seed + 1)
    lam = torch.tensor(source.eigenvalues).sqrt()
    w_star = torch.tensor(source.w_star)
    x_eval, y_eval = (t.double().cpu() for t in source.eval_data("validation"))
    marks = sorted({max(1, int(round(f * steps))) for f in checkpoints})
    w0 = model[1].weight.detach().clone()

    def loss_of(flat):
        return F.mse_loss(x_eval @ flat.view_as(w0).T, y_eval)

    hess = torch.func.hessian(loss_of)(w0.reshape(-1))       # exact: the loss is quadratic in W
    lam_h = torch.linalg.eigvalsh(hess)
    out = []
    for t in range(1, marks[-1] + 1):
        x = torch.randn(batch_size, dim, generator=gen, dtype=torch.float64) * lam
        y = x @ w_star.T + source.noise_std * torch.randn(batch_size, k, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
        if t in marks:
            root = adam_preconditioner(opt, model).sqrt_apply(torch.eye(hess.shape[0], dtype=torch.float64))
            mu = torch.linalg.eigvalsh(root @ hess @ root)
            out.append((t, power_from_spectra(lam_h.numpy(), mu.numpy())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="runs/compare_linear_ls.sqlite", help="sweep store with adam studies")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    source = build_workload_data(get_workload("linear_ls"), device="cpu")
    studies = [s for s in summarize_store(args.store)
               if s.workload == "linear_ls" and s.optimizer == "adam" and s.steps_to_result]
    if not studies:
        raise SystemExit(f"no COMPLETE adam study of linear_ls in {args.store}")
    rows = []
    for s in sorted(studies, key=lambda s: s.batch_size):
        for step, r in measure(source, dict(s.best_hparams), s.batch_size, s.steps_to_result):
            rows.append({"batch_size": s.batch_size, "step": step, "steps_to_result": s.steps_to_result,
                         "power": r.power, "power_stderr": r.stderr, "power_ratio": r.power_ratio})
    powers = [row["power"] for row in rows]
    summary = {"rows": rows, "median_power": float(np.median(powers))}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'B':>6} {'step':>6} {'of':>6} {'p (slope)':>10} {'stderr':>8} {'p (ends)':>9}")
    for row in rows:
        print(f"{row['batch_size']:>6} {row['step']:>6} {row['steps_to_result']:>6} {row['power']:>10.3f} "
              f"{row['power_stderr']:>8.3f} {row['power_ratio']:>9.3f}")
    print(f"median effective power of Adam: {summary['median_power']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
