"""The per-problem memo: a cell tuned once on a problem object is not tuned again (the S_min ladder
after a sweep), results are the same either way, and the memo goes with the problem."""

import gc
import math

import numpy as np

import nqm
from nqm import _memo, tuning


def test_cells_tuned_by_a_sweep_are_reused_with_identical_results(monkeypatch):
    problem = nqm.NQM.paper(1000, bins=20)
    sweep = nqm.batch_size_sweep(problem, batch_sizes=[1, 4, 16, 64], powers=[0.0])
    tuned = []
    kernel = tuning._tune_rows

    def counting(*args):
        tuned.append(args[3].shape[0])
        return kernel(*args)

    monkeypatch.setattr(tuning, "_tune_rows", counting)
    again = nqm.batch_size_sweep(problem, batch_sizes=[1, 4, 16, 64], powers=[0.0])
    assert tuned == [] and np.array_equal(again.steps, sweep.steps)
    assert np.array_equal(again.lr, sweep.lr)
    out = tuning.tune_cells(problem, [4.0, 8.0, 8.0, 16.0, math.inf], [0.0], 0.0, False, 0.01)
    assert tuned == [2]                         # 8 (asked twice) and inf are new
    fresh = nqm.NQM.paper(1000, bins=20)
    monkeypatch.setattr(tuning, "_tune_rows", kernel)
    assert np.array_equal(out, tuning.tune_cells(fresh, [4.0, 8.0, 8.0, 16.0, math.inf], [0.0],
                                                 0.0, False, 0.01))


def test_memo_is_freed_with_its_problem():
    problem = nqm.NQM.paper(100, bins=5)
    nqm.e_min(problem)
    assert len(_memo.memo(problem)) == 1
    n = len(_memo._MEMOS)
    del problem
    gc.collect()
    assert len(_memo._MEMOS) == n - 1
