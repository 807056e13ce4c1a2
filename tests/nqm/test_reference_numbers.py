"""Speed work must not change a number: the main job (``python -m nqm --json``) and a few API
calls are compared, bit for bit, with outputs recorded from the reference implementation
(``tests/nqm/data/reference_numbers.json``; regenerate only on purpose:
``python -m tests.nqm.test_reference_numbers``)."""

import contextlib
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

import nqm
from nqm.cli import main as nqm_main

DATA = Path(__file__).parent / "data" / "reference_numbers.json"


def _main_job() -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert nqm_main(["--json", "--quiet"]) == 0
    return buf.getvalue()


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


def _problem_digest(p: nqm.NQM) -> str:
    return _digest(p.h, p.c, p.counts, p.x0sq)


def _spectrum_with_repeats() -> nqm.NQM:
    """Unbinned, with repeated curvatures whose noise or x0sq differ (distinct bins) or agree."""
    h = np.array([1.0, 0.5, 1.0, 0.25, 0.5, 1.0, 0.25, 0.125])
    c = np.array([1.0, 0.5, 1.0, 0.30, 0.5, 2.0, 0.25, 0.125])
    x0 = np.array([1.0, 1.0, 1.0, 1.00, 3.0, 1.0, 1.00, 1.000])
    return nqm.NQM.from_spectrum(h, c=c, x0sq=x0, bins=None)


def _cases() -> dict:
    small = nqm.NQM.paper(1000, bins=30)
    crit = nqm.critical_batch(small, momentum="tune", power=0.25)
    sched = nqm.optimize_schedule(small, batch_size=64, n_pieces=20)
    mc = nqm.gradient_cosine_monte_carlo(nqm.NQM.paper(300, bins=None), [0, 5, 20], lr=0.5,
                                         batch_size=16, runs=4, seed=3)
    mc_p = nqm.gradient_cosine_monte_carlo(nqm.NQM.paper(300, bins=None), [1, 2, 9], lr=0.3,
                                           batch_size=8, power=0.5, runs=3, seed=5)
    return {
        "critical_tuned_momentum_p025": crit.to_dict(),
        "e_min_tuned_paper_p05": nqm.e_min(momentum="tune", power=0.5),
        "s_min_nesterov_tuned": nqm.s_min(small, momentum="tune", nesterov=True),
        "critical_perfect_scaling": nqm.critical_batch(small, definition="perfect_scaling").value,
        "optimize_schedule_K20": [sched.steps, sched.risk, sched.schedule.lr.tolist()],
        "walk_monte_carlo": [mc.mean.tolist(), mc.std.tolist()],
        "walk_monte_carlo_preconditioned": [mc_p.mean.tolist(), mc_p.std.tolist()],
        "paper_unbinned_d20000": _problem_digest(nqm.NQM.paper(20_000, bins=None)),
        "power_law_unbinned": _problem_digest(nqm.NQM.power_law(5000, a=1.5, q=0.5, bins=None)),
        "spectrum_with_repeats": _problem_digest(_spectrum_with_repeats()),
    }


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(DATA.read_text())


def test_main_job_json_is_unchanged(reference):
    assert _main_job() == reference["main_job_json"]


def test_api_numbers_are_unchanged(reference):
    got = json.loads(json.dumps(_cases()))        # the same float round trip as the file
    for key, want in reference["cases"].items():
        assert got[key] == want, key


def test_reference_file_is_self_consistent(reference):
    main = json.loads(reference["main_job_json"])
    assert [o["name"] for o in main["optimizers"]] == ["SGD", "momentum (tuned)", "SGD, P=H^-0.5"]
    assert all(math.isfinite(o["critical_batch"]["value"]) for o in main["optimizers"])


if __name__ == "__main__":
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps({"main_job_json": _main_job(), "cases": _cases()}, indent=1) + "\n")
    print(f"wrote {DATA}")
