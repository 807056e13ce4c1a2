"""The physical comparison (``nnbench compare``, default mode): a store generated from an exact NQM
(known d and noise scale) plus multiplicative trial noise is fitted back and its B_crit covered; the fit
sees SGD only; unsupported data are refused; table, JSON, figure and CLI."""

import json
import math
import re

import numpy as np
import pytest

from nnbench.bootstrap import Seeds, study_points
from nnbench.cli import main
from nnbench.compare import compare
from nnbench.compare_fit import compare_fit, study_trials, write_results
from nnbench.predict import FAMILIES, CurveBank, d_grid, fit_sgd, predict_from_sgd
from nnbench.store import Status, Store, TrialResult

D_TRUE, BATCH_SCALE, NQM_TARGET = 64, 5.0, 0.01
GRID = d_grid(32, 128)
BATCHES = [2**e for e in range(3, 17)]          # 8 .. 65536


@pytest.fixture(scope="module")
def bank():
    return CurveBank(target=NQM_TARGET, bins=24)


def true_steps(bank, optimizer, b):
    curve = bank.curve(FAMILIES[optimizer], D_TRUE)
    return float(np.exp(curve.log_steps(np.log([b / BATCH_SCALE]))[0]))


def write_store(path, bank, *, optimizers=("sgd", "momentum", "adam"), trials=4, noise=0.08, seed=0,
                scale=None, batches=BATCHES, steps_fn=None):
    """Per (optimizer, B) ``trials`` trials: the study's best trial needs the tuned NQM steps x exp(N(0, noise))
    (multiplicative scatter of the point), the others, mistuned, exp(|N(0, 0.3)|) times more (rounded, at
    least 1); the NQM is h_i = 1/i, i = 1..D_TRUE at batch scale BATCH_SCALE. ``scale``: {optimizer: factor}
    multiplying that optimizer's steps (a perturbation)."""
    rng = np.random.default_rng(seed)
    with Store(path) as store:
        for opt in optimizers:
            for b in batches:
                definition = {"workload": "nqm_toy", "optimizer": opt, "batch_size": b, "metric": "risk",
                              "target": 0.5, "direction": "min", "max_steps": 10**7, "seed": 0,
                              "search_space": {"params": [{"name": "lr", "low": 1e-3, "high": 10.0,
                                                           "scale": "log"}], "fixed": {}}}
                rec = store.ensure_study(definition, trials)
                base = (steps_fn or true_steps)(bank, opt, b) * (scale or {}).get(opt, 1.0)
                point = base * math.exp(rng.normal(0.0, noise))
                for i in range(trials):
                    steps = max(1, int(round(point * (math.exp(abs(rng.normal(0.0, 0.3))) if i else 1.0))))
                    store.write_trial(rec.id, TrialResult(
                        index=i, status=Status.COMPLETE, hparams={"lr": 0.1}, steps_to_result=steps,
                        steps_run=steps, final_metric=0.4, best_metric=0.4, wall_time=0.1, device="cpu", seed=i))


def test_fit_sgd_recovers_d_and_batch_scale_from_exact_points(bank):
    B = np.array(BATCHES, float)
    S = [true_steps(bank, "sgd", b) for b in B]
    f = fit_sgd(B, S, bank=bank, d_grid=GRID)
    assert f.d == D_TRUE and f.batch_scale == pytest.approx(BATCH_SCALE, rel=1e-3)
    assert f.residual_rms < 1e-3 and f.n_points == len(BATCHES) and not f.d_at_edge
    assert min(f.profile) == pytest.approx(f.residual_rms)
    # no steps scale: the same points at twice the steps need another spectrum, not a scale
    assert fit_sgd(B, 2 * np.array(S), bank=bank, d_grid=GRID).d > D_TRUE
    with pytest.raises(ValueError, match="3 batch sizes"):
        fit_sgd(B[:2], S[:2], bank=bank, d_grid=GRID)
    # points that stop short of the plateau still fit, with the caveat said
    short = predict_from_sgd({b: [s] for b, s in zip(B[:6], S[:6], strict=True)}, ["sgd"], bank=bank,
                             batch_sizes=B, d_grid=GRID, n_boot=3)
    assert short.caveat is not None and "beyond the largest batch measured" in short.caveat


def test_physical_fit_on_a_noisy_exact_nqm_store(tmp_path, bank):
    store = tmp_path / "s.sqlite"
    write_store(store, bank)
    r = compare_fit(store, out_dir=tmp_path / "figs", d_grid=GRID, bank=bank, n_boot=60, seed=1)
    ph = r.physical
    assert ph.fit.d in (51, 64, 81) and ph.d.low <= D_TRUE <= ph.d.high and ph.caveat is None
    assert ph.batch_scale.low <= BATCH_SCALE * 1.05 and ph.batch_scale.high >= BATCH_SCALE * 0.95
    for opt in ("sgd", "momentum", "adam"):
        known = BATCH_SCALE * bank.curve(FAMILIES[opt], D_TRUE).b_crit
        iv = ph.predictions[opt].b_crit
        assert iv.low <= known <= iv.high, (opt, known, iv)
        # the measured McCandlish fit of the noisy points agrees with the prediction within 2x
        assert r.ratio(opt, "b_crit") > 0.5 and r.ratio(opt, "b_crit") < 2.0
        m = r.measured[opt]
        assert m.refused is None and m.b_crit.low <= m.b_crit.value <= m.b_crit.high
        assert np.all(m.steps_interval[:, 0] <= m.steps) and np.all(m.steps <= m.steps_interval[:, 1])
    d = r.to_dict()
    json.dumps(d)
    assert d["optimizers"]["momentum"]["role"] == "predicted out of sample"
    assert set(d["optimizers"]["adam"]["ratio_predicted_over_measured"]) == {"b_crit", "s_min", "e_min"}
    assert d["sgd_fit"]["effective_dimension_d"]["value"] == ph.fit.d
    text = r.table()
    assert "fit on SGD only" in text and "pred/meas" in text and "refused" not in text
    png = tmp_path / "figs" / "compare_nqm_toy.png"
    assert r.figure == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = write_results(r, tmp_path / "results")
    assert out.name == "compare_nqm_toy.json" and json.loads(out.read_text())["workload"] == "nqm_toy"


def test_fit_sees_sgd_only(tmp_path, bank):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    write_store(a, bank)
    write_store(b, bank, scale={"momentum": 3.0, "adam": 0.2})
    ra = compare_fit(a, out_dir=None, d_grid=GRID, bank=bank, n_boot=20)
    rb = compare_fit(b, out_dir=None, d_grid=GRID, bank=bank, n_boot=20)
    assert ra.physical.fit == rb.physical.fit
    for opt in ("sgd", "momentum", "adam"):
        pa, pb = ra.physical.predictions[opt], rb.physical.predictions[opt]
        assert (pa.b_crit, pa.s_min, pa.e_min) == (pb.b_crit, pb.s_min, pb.e_min)
        np.testing.assert_array_equal(pa.steps_band, pb.steps_band)
    assert rb.measured["momentum"].s_min.value > 2 * ra.measured["momentum"].s_min.value


def test_unsupported_data_are_refused(tmp_path, bank):
    rising = tmp_path / "rising.sqlite"
    write_store(rising, bank, optimizers=("sgd",), steps_fn=lambda bank, opt, b: 10.0 * b ** 0.3)
    with pytest.raises(ValueError, match="cannot support the physical fit: steps do not decrease"):
        compare_fit(rising, out_dir=None, d_grid=GRID, bank=bank, n_boot=5)
    # momentum measured only at small B: its plateau is never reached, its B_crit is refused
    store = tmp_path / "s.sqlite"
    write_store(store, bank, optimizers=("sgd",))
    write_store(store, bank, optimizers=("momentum",), batches=BATCHES[:4], seed=2)
    r = compare_fit(store, out_dir=None, d_grid=GRID, bank=bank, n_boot=10)
    m = r.measured["momentum"]
    # nqm.fit refuses it (no curvature: only a lower bound), or the fit lands beyond the range
    assert m.refused is not None and re.search("measure larger batch sizes|beyond the largest batch", m.refused)
    assert m.b_crit is None and r.ratio("momentum", "b_crit") is None
    assert "refused" in r.table() and "momentum measured: " in r.table()
    assert r.to_dict()["optimizers"]["momentum"]["measured"]["unsupported_reason"] == m.refused
    # the prediction is still made: it never looked at momentum's data
    assert math.isfinite(r.physical.predictions["momentum"].b_crit.value)
    no_sgd = tmp_path / "nosgd.sqlite"
    write_store(no_sgd, bank, optimizers=("momentum",))
    with pytest.raises(ValueError, match="needs SGD studies"):
        compare_fit(no_sgd, out_dir=None, d_grid=GRID, bank=bank)
    # a d the grid cannot reach is refused, not printed
    with pytest.raises(ValueError, match="edge of the d grid"):
        compare_fit(store, out_dir=None, d_grid=(4, 6, 8), bank=bank, n_boot=5)


def test_study_trials_and_mode_checks(tmp_path, bank):
    store = tmp_path / "s.sqlite"
    write_store(store, bank, optimizers=("sgd",), trials=3)
    w, metric, target, trials, missing = study_trials(store)
    assert (w, metric, target, missing) == ("nqm_toy", "risk", 0.5, ())
    assert sorted(trials["sgd"]) == [float(b) for b in BATCHES] and len(trials["sgd"][8.0]) == 3
    with pytest.raises(ValueError, match="spectrum must be"):
        compare(store, spectrum="measured")
    with pytest.raises(ValueError, match="fit_on"):
        compare(store, fit_on="all")
    with pytest.raises(ValueError, match="n_boot"):
        compare(store, spectrum="paper", n_boot=10)


def test_cli_physical_compare(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    write_store(store, CurveBank(target=NQM_TARGET, bins=24), optimizers=("sgd",), trials=2)
    argv = ["compare", "--store", str(store), "--out", str(tmp_path), "--d-range", "32", "128",
            "--bootstrap", "5", "--results", str(tmp_path / "res")]
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["optimizers"]["sgd"]["role"] == "fitted (SGD)" and out["bootstrap"]["requested"] == 5
    assert (tmp_path / "res" / "compare_nqm_toy.json").exists() and (tmp_path / "compare_nqm_toy.png").exists()
    assert main(argv[:-2] + ["--power", "adam"]) == 2
    assert "--power: expected NAME=P" in capsys.readouterr().err
    assert main(argv[:-2] + ["--fit-on", "all"]) == 2
    assert "--fit-on applies to --spectrum paper" in capsys.readouterr().err


def write_protocol_store(path, bank, *, optimizers=("sgd", "momentum"), seeds=5, with_seeds=True, seed=0):
    """A store as ``nnbench protocol`` writes it: per (optimizer, B) a search study (untagged), a focused
    study naming it as parent and, with ``with_seeds``, a seeds study. The searches' best trials are
    lucky (the tuned steps / 3 and / 4), the seeds scatter about the tuned steps; returns
    {(optimizer, B): (seed steps, fewest over the searches)}."""
    rng = np.random.default_rng(seed)
    truth = {}

    def study(store, opt, b, steps, protocol=None):
        definition = {"workload": "nqm_toy", "optimizer": opt, "batch_size": b, "metric": "risk", "target": 0.5,
                      "direction": "min", "max_steps": 10**7, "seed": 0,
                      "search_space": {"params": [{"name": "lr", "low": 1e-3, "high": 10.0, "scale": "log"}],
                                       "fixed": {}}, **({"protocol": protocol} if protocol else {})}
        rec = store.ensure_study(definition, len(steps))
        for i, s in enumerate(steps):
            done = s is not None
            store.write_trial(rec.id, TrialResult(
                index=i, status=Status.COMPLETE if done else Status.INCOMPLETE, hparams={"lr": 0.1},
                steps_to_result=s, steps_run=s or 10**7, final_metric=0.4, best_metric=0.4, wall_time=0.1,
                device="cpu", seed=i))
        return rec

    with Store(path) as store:
        for opt in optimizers:
            for b in BATCHES:
                base = true_steps(bank, opt, b)
                search = study(store, opt, b, [max(1, round(base / 3)), round(5 * base), None])
                study(store, opt, b, [round(3 * base), max(1, round(base / 4))],
                      {"round": "focus", "parent": search.key, "widened": {}})
                s = [max(1, round(base * math.exp(rng.normal(0.0, 0.05)))) for _ in range(seeds - 1)] + [None]
                if with_seeds:
                    study(store, opt, b, s, {"round": "seeds", "source": {"study": search.key, "trial": 0}})
                truth[(opt, float(b))] = (s, max(1, round(base / 4)))
    return truth


def test_protocol_store_points_are_medians_over_seeds(tmp_path, bank):
    store = tmp_path / "p.sqlite"
    truth = write_protocol_store(store, bank)
    _, _, _, trials, missing = study_trials(store)
    assert missing == () and sorted(trials) == ["momentum", "sgd"]
    for opt in trials:
        assert sorted(trials[opt]) == [float(b) for b in BATCHES]     # one point per B, not one per study
        assert all(isinstance(v, Seeds) and len(v) == 5 for v in trials[opt].values())
    r = compare_fit(store, out_dir=None, d_grid=GRID, bank=bank, n_boot=30, seed=2)
    for opt in ("sgd", "momentum"):
        m = r.measured[opt]
        # the median of 5 seeds, one of which missed the target (beyond the budget): the 3rd of the 4 + inf
        want = [sorted(truth[(opt, b)][0][:-1])[2] for b in m.batch_sizes]
        np.testing.assert_array_equal(m.steps, want)
        assert np.all(m.steps_interval[:, 0] <= m.steps) and np.all(m.steps <= m.steps_interval[:, 1])
        assert r.ratio(opt, "b_crit") > 0.5 and r.ratio(opt, "b_crit") < 2.0
    # the fit sees the seed medians (the tuned steps), so it recovers the true spectrum, not a lucky one
    assert r.physical.fit.d in (51, 64, 81)
    assert "measured points: sgd, momentum: median over 5 seeds of the best configuration" in r.table()
    point = r.to_dict()["optimizers"]["sgd"]["measured"]["points"][0]
    assert point["rule"] == "median over 5 seeds of the best configuration" and point["complete_trials"] == 4
    # a seed median beyond the budget is no point, and says why
    b = BATCHES[0]
    v = trials["sgd"][float(b)]
    assert not study_points({b: Seeds((v.steps[0], None, None))})[0].size


def test_protocol_store_without_seeds_pools_the_search_rounds(tmp_path, bank):
    store = tmp_path / "p.sqlite"
    truth = write_protocol_store(store, bank, optimizers=("sgd",), with_seeds=False)
    _, _, _, trials, _ = study_trials(store)
    assert sorted(trials["sgd"]) == [float(b) for b in BATCHES] and len(trials["sgd"][8.0]) == 5
    r = compare_fit(store, out_dir=None, d_grid=d_grid(4, 128), bank=bank, n_boot=5)
    # the lucky minima (4x fewer steps than tuned) pass for an easier spectrum: what seeds avoid
    assert r.physical.fit.d < D_TRUE
    np.testing.assert_array_equal(r.measured["sgd"].steps, [truth[("sgd", b)][1] for b in r.measured["sgd"].batch_sizes])
    assert "measured points: sgd: fewest steps over 5 trials" in r.table()


def test_status_shows_protocol_rounds(tmp_path, bank, capsys):
    store = tmp_path / "p.sqlite"
    write_protocol_store(store, bank, optimizers=("sgd",))
    assert main(["status", "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[3] == "round"
    assert [line.split()[3] for line in lines[2:5]] == ["search", "focus", "seeds"]
    assert main(["status", "--store", str(store), "--json"]) == 0
    rounds = [s["protocol_round"] for s in json.loads(capsys.readouterr().out)]
    assert rounds[:3] == ["search", "focus", "seeds"]
    plain = tmp_path / "s.sqlite"
    write_store(plain, bank, optimizers=("sgd",), trials=1, batches=BATCHES[:2])
    assert main(["status", "--store", str(plain)]) == 0
    assert "round" not in capsys.readouterr().out.splitlines()[0]
