"""The tiny online-teacher workload shared by the trial and study tests.

Online teacher data and a one-hidden-layer FC net: a trial takes well under a second on one CPU
thread, and below the critical batch size steps to 85% validation accuracy fall by ~2x per 4x batch
(about 150 / 60 / 30 steps for B = 8 / 32 / 128)."""

import dataclasses

from nnbench.workloads import Workload

TINY = Workload(
    name="tiny_teacher",
    dataset="teacher",
    dataset_kwargs={"input_dim": 8, "hidden": 16, "num_classes": 4, "seed": 0, "num_eval": 512},
    model="fc",
    model_kwargs={"depth": 1, "width": 32},
    metric="accuracy",
    target=0.85,
    eval_every=10,
    max_steps=600,
)


def tiny_teacher(**changes) -> Workload:
    """TINY with some fields replaced (e.g. ``target=0.8, max_steps=400``)."""
    return dataclasses.replace(TINY, **changes)
