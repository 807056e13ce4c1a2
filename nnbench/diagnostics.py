"""Where the NQM's fixed-Hessian assumption visibly breaks: the sharpness along a tuned SGD run.

The NQM is a fixed quadratic: SGD on it is stable only while lr * lambda_max < 2 (lambda_max the
largest curvature; Zhang et al. 2019 section 3, the condition on every direction's step factor
|1 - lr h_i| < 1). A network's Hessian moves: the best SGD runs often start far above that limit
and their sharpness then drops to about 2 / lr, the "edge of stability" (Cohen et al. 2021;
``shared/spec/PREDICTION.md`` section 4 measures lr * lambda_max(init) of 21-54 on teacher_fc).
:func:`sharpness_along_sgd` re-runs the SGD configuration that the comparison fitted (a stored
study's best, or the configuration of its seeds round) for a few steps and measures lambda_max by
Lanczos (``nnbench.instruments.hessian_eigenvalues``) on a fixed probe batch of training examples
at checkpoints along the run; :class:`SharpnessDiagnostic` reports lr * lambda_max beside the
NQM's limit 2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["NQM_STABILITY_LIMIT", "Checkpoint", "SharpnessDiagnostic", "sharpness_along_sgd", "stored_sgd_run",
           "diagnose_store"]

# SGD on a quadratic diverges along a direction of curvature h once lr * h > 2
NQM_STABILITY_LIMIT = 2.0


@dataclass(frozen=True)
class Checkpoint:
    """lambda_max at one step of the run (parameters before that step's update).

    Attributes:
      step: updates taken so far; lr: the learning rate of the next update.
      lambda_max: largest Hessian eigenvalue of the mean loss on the probe batch (Lanczos);
      residual: its Ritz residual ||H u - lambda u|| (a bound on its error).
    """

    step: int
    lr: float
    lambda_max: float
    residual: float

    @property
    def lr_lambda(self) -> float:
        """lr * lambda_max, dimensionless; the NQM needs it below :data:`NQM_STABILITY_LIMIT`."""
        return self.lr * self.lambda_max


@dataclass(frozen=True)
class SharpnessDiagnostic:
    """lambda_max along a short SGD run of a workload.

    Attributes:
      workload, batch_size, hparams: the run; probe_size: examples of the probe batch.
      checkpoints: :class:`Checkpoint` per measured step; steps_run, status: how the run ended
        (it stops early when it reaches the workload's target or diverges).
    """

    workload: str
    batch_size: int
    hparams: Mapping[str, float]
    probe_size: int
    checkpoints: tuple[Checkpoint, ...]
    steps_run: int
    status: str

    @property
    def beyond_limit(self) -> tuple[int, ...]:
        """Steps where lr * lambda_max exceeds the NQM's stability limit 2."""
        return tuple(c.step for c in self.checkpoints if c.lr_lambda > NQM_STABILITY_LIMIT)

    def verdict(self) -> str:
        if not self.beyond_limit:
            return (f"lr * lambda_max stays below the NQM's stability limit {NQM_STABILITY_LIMIT:g}: the "
                    f"fixed-H assumption is not visibly broken here")
        first = self.checkpoints[0]
        return (f"lr * lambda_max exceeds the NQM's stability limit {NQM_STABILITY_LIMIT:g} at step(s) "
                f"{', '.join(map(str, self.beyond_limit))} (at step {first.step}: {first.lr_lambda:.3g}): a fixed "
                f"quadratic would diverge at this lr, so the network's Hessian is not the NQM's fixed H there")

    def table(self) -> str:
        lines = [f"{self.workload}: sharpness along SGD at B={self.batch_size}, "
                 + " ".join(f"{k}={v:.4g}" for k, v in self.hparams.items())
                 + f" (Lanczos on a probe batch of {self.probe_size} training examples; the run ended {self.status} "
                 f"after {self.steps_run} steps)",
                 f"{'step':>6} {'lr':>10} {'lambda_max':>12} {'residual':>10} {'lr*lambda_max':>14}  NQM limit "
                 f"{NQM_STABILITY_LIMIT:g}"]
        for c in self.checkpoints:
            flag = "above" if c.lr_lambda > NQM_STABILITY_LIMIT else "below"
            lines.append(f"{c.step:>6} {c.lr:>10.4g} {c.lambda_max:>12.4g} {c.residual:>10.2g} {c.lr_lambda:>14.4g}  "
                         f"{flag}")
        lines.append(self.verdict())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"workload": self.workload, "batch_size": self.batch_size, "hparams": dict(self.hparams),
                "probe_size": self.probe_size, "steps_run": self.steps_run, "status": self.status,
                "nqm_stability_limit": NQM_STABILITY_LIMIT,
                "checkpoints": [{"step": c.step, "lr": c.lr, "lambda_max": c.lambda_max, "residual": c.residual,
                                 "lr_times_lambda_max": c.lr_lambda} for c in self.checkpoints],
                "beyond_limit_steps": list(self.beyond_limit), "verdict": self.verdict()}


def _positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def sharpness_along_sgd(workload, *, hparams: Mapping[str, float], batch_size: int, steps: int = 100,
                        every: int = 25, probe_size: int = 512, lanczos_steps: int = 20, seed: int = 0,
                        device="cpu", data_dir: str | None = None) -> SharpnessDiagnostic:
    """Run SGD on ``workload`` for ``steps`` updates and measure lambda_max every ``every`` steps.

    Args:
      workload: a ``nnbench.workloads.Workload`` or a registered name.
      hparams: SGD's hyperparameters (``lr``, and the schedule's when the workload decays it).
      batch_size: examples per update.
      steps, every: the run's length and the spacing of the checkpoints (step 0 included).
      probe_size: training examples of the fixed batch whose mean-loss Hessian is measured.
      lanczos_steps: Hessian-vector products per checkpoint (``hessian_eigenvalues``' num_steps).
      seed: initialisation and batch order (the probe batch is drawn with ``seed + 1``).
      device, data_dir: as for ``nnbench.trial.run``.
    """
    from nnbench.device import resolve_device
    from nnbench.instruments import hessian_eigenvalues
    from nnbench.trial import _trial_hparams, run
    from nnbench.workloads import build_workload_data, get_workload

    workload = get_workload(workload) if isinstance(workload, str) else workload
    steps, every = _positive_int("steps", steps), _positive_int("every", every)
    probe_size, lanczos_steps = _positive_int("probe_size", probe_size, 2), _positive_int("lanczos_steps", lanczos_steps)
    _, schedule, _ = _trial_hparams(workload, "sgd", hparams)   # checks hparams; lr at each step
    dev = resolve_device(device)
    data = build_workload_data(workload, device=dev, data_dir=data_dir)
    xp, yp = next(data.train_stream(probe_size, seed + 1))
    checkpoints = []

    def instrument(model, loss_fn, _batch):
        # called with the parameters before update number len(checkpoints) * every
        step = len(checkpoints) * every
        eig = hessian_eigenvalues(model, loss_fn, xp, yp, k=1, num_steps=lanczos_steps, seed=seed)
        checkpoints.append(Checkpoint(step, float(schedule(step)), eig.eigenvalues[0], eig.residuals[0]))
        return {"lambda_max": eig.eigenvalues[0]}

    # one step past the last checkpoint, so that it is measured
    result = run(workload.replace(max_steps=steps + 1), optimizer="sgd", hparams=hparams, batch_size=batch_size,
                 seed=seed, device=dev, data=data, instruments=[instrument], instrument_every=every)
    return SharpnessDiagnostic(workload=workload.name, batch_size=int(batch_size), hparams=dict(hparams),
                               probe_size=probe_size, checkpoints=tuple(checkpoints), steps_run=result.steps_run,
                               status=result.status.value)


def stored_sgd_run(store_path: str | os.PathLike, *, workload: str | None = None, target: float | None = None,
                   batch_size: float | None = None):
    """(workload, batch size, hparams) of the SGD configuration a store's comparison fitted at the stored
    batch size nearest ``batch_size`` (in log B; default the middle of the SGD batch sizes): the
    configuration of its seeds round where there is one, else its best trial. The workload is rebuilt
    from the stored definition (the registered one with the stored fields)."""
    from nnbench.compare import _select
    from nnbench.store import Store
    from nnbench.workloads import get_workload

    workload, _, target, sel = _select(store_path, workload, target)
    sgd = [s for s in sel if s.optimizer == "sgd" and s.best_hparams is not None]
    if not sgd:
        raise ValueError(f"--diagnose: no SGD study of {workload!r} with a COMPLETE trial")
    sizes = sorted({s.batch_size for s in sgd})
    if batch_size is None or not math.isfinite(batch_size):
        batch_size = math.sqrt(sizes[0] * sizes[-1])
    b = min(sizes, key=lambda x: abs(math.log(x / batch_size)))
    at = [s for s in sgd if s.batch_size == b]
    chosen = next((s for s in at if s.protocol_round == "seeds"), None) or min(at, key=lambda s: s.steps_to_result)
    with Store(store_path, create=False) as store:
        stored = dict(store.study(chosen.study_id).definition.get("workload_definition") or {})
    w = get_workload(stored.pop("name", workload))
    w = w.replace(**{k: v for k, v in stored.items() if getattr(w, k, None) != v})
    return w, int(b), dict(chosen.best_hparams)


def diagnose_store(store_path: str | os.PathLike, *, workload: str | None = None, target: float | None = None,
                   batch_size: float | None = None, **options) -> SharpnessDiagnostic:
    """:func:`sharpness_along_sgd` for :func:`stored_sgd_run`'s configuration; ``options`` are its keywords."""
    w, b, hparams = stored_sgd_run(store_path, workload=workload, target=target, batch_size=batch_size)
    return sharpness_along_sgd(w, hparams=hparams, batch_size=b, **options)
