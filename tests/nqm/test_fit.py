"""nqm.fit: the McCandlish fit of measured points, its intervals, refusals and warnings, and the
``critical-batch`` CLI on measured points (table, CSV, errors)."""

import json
import math
import re
import warnings

import numpy as np
import pytest
import scipy.optimize

import nqm
from nqm.cli import main
from nqm.fit import CriticalBatchFitWarning, fit_critical_batch

S_MIN, E_MIN = 700.0, 6.3e5                      # B_crit = 900
B6 = np.array([8.0, 32, 128, 512, 2048, 8192])


def curve(B, s_min=S_MIN, e_min=E_MIN):
    return s_min + e_min / np.asarray(B, dtype=float)


def _coverage(draws, noise_given=None):
    """Fraction of draws whose intervals contain the true B_crit, S_min, E_min (with
    ``noise_given``, the fit is told each point's log-normal sd)."""
    hits = np.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CriticalBatchFitWarning)
        for B, S in draws:
            f = fit_critical_batch(B, S, steps_err=None if noise_given is None else noise_given * S)
            for i, (truth, (lo, hi)) in enumerate(((E_MIN / S_MIN, f.b_crit_interval),
                                                   (S_MIN, f.s_min_interval),
                                                   (E_MIN, f.e_min_interval))):
                hits[i] += lo <= truth <= hi
    return hits / len(draws)


# With 200 draws a true 95% coverage gives 0.95 +- 0.015 (binomial sd); 0.90 is 3.2 sd below it,
# 0.99 is 2.6 sd above (a far too wide interval would cover every time).
@pytest.mark.parametrize("case", ["scatter estimated", "uncertainties given, replicates"])
def test_intervals_cover_the_truth_in_95_percent_of_noisy_draws(case):
    rng = np.random.default_rng(12)
    if case == "scatter estimated":           # 6 batch sizes, 5 % log-normal noise
        B = B6
        draws = [(B, curve(B) * np.exp(0.05 * rng.standard_normal(B.size))) for _ in range(200)]
        cover = _coverage(draws)
    else:                                     # 4 batch sizes x 2 runs, known 8 % noise
        B = np.repeat([16.0, 128, 1024, 8192], 2)
        draws = [(B, curve(B) * np.exp(0.08 * rng.standard_normal(B.size))) for _ in range(200)]
        cover = _coverage(draws, noise_given=0.08)
    assert np.all(cover >= 0.90) and np.all(cover <= 0.99), cover


def test_an_exact_hyperbola_is_recovered_with_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = fit_critical_batch(B6, curve(B6))
    assert f.b_crit == pytest.approx(900.0, rel=1e-7)
    assert f.s_min == pytest.approx(S_MIN, rel=1e-7) and f.e_min == pytest.approx(E_MIN, rel=1e-7)
    assert f.b_crit_interval == pytest.approx((900.0, 900.0), rel=1e-5)
    assert f.warnings == () and f.residual_rms < 1e-9 and not f.b_crit_unbounded


@pytest.mark.parametrize("overhead", [0.2, 0.5])
def test_the_overhead_definition_matches_a_direct_root_on_the_known_curve(overhead):
    """Zhang et al. 2024: S(B) = (1 + overhead) * E_min / B (perfect scaling from B -> 0)."""
    direct = scipy.optimize.brentq(lambda b: curve(b) - (1 + overhead) * E_MIN / b, 1.0, 1e7,
                                   xtol=1e-10)
    f = fit_critical_batch(B6, curve(B6), overhead=overhead)
    assert f.b_overhead == pytest.approx(direct, rel=1e-7)
    noisy = fit_critical_batch(B6, curve(B6) * np.exp([0.03, -0.02, 0.01, -0.03, 0.02, 0.0]),
                               overhead=overhead)
    assert noisy.b_overhead_interval == pytest.approx(
        tuple(overhead * b for b in noisy.b_crit_interval), rel=1e-12)


@pytest.mark.parametrize("B, S, match", [
    ([64, 256, 1024], [50, 80, 100], "do not decrease"),                 # rising
    ([8, 16, 32, 64], [100, 100, 100, 100], "do not decrease"),          # exactly flat
    ([8, 64, 512], [100, 80, 95], "not decrease significantly"),         # flat within noise
    ([8, 16, 32, 64], [1000, 500, 250, 125], "perfect scaling"),         # no plateau
    ([8, 16, 32], [100, 60, 90], "consistent both"),                     # nothing identified
    ([8, 64, 8, 64], [100, 50, 101, 49], "3 distinct"),                  # two batch sizes
])
def test_points_that_cannot_support_a_fit_are_refused_with_the_reason(B, S, match):
    with pytest.raises(ValueError, match=match):
        fit_critical_batch(B, S)
    with pytest.raises(ValueError, match=match):
        nqm.critical_batch(batch_sizes=B, steps=S)


def test_b_crit_beyond_the_measured_range_is_a_warned_one_sided_bound():
    B = np.array([8.0, 32, 128, 512])
    S = (300 + 300 * 5000 / B) * np.exp([0.02, -0.02, 0.0, 0.01])        # true B_crit 5000
    with pytest.warns(CriticalBatchFitWarning, match="bounded below"):
        f = fit_critical_batch(B, S)
    assert f.b_crit_unbounded and f.b_crit_interval[1] == math.inf
    assert f.b_crit_interval[0] < 5000 and f.s_min_interval[0] == 0.0
    assert f.b_crit_text().startswith("> ") and "bounded below" in f.warnings[0]
    d = f.to_dict()
    assert d["b_crit_interval"][1] is None and d["b_crit_text"] == f.b_crit_text()
    json.dumps(d)
    assert "> " in f.table() and "inf)" in f.table()


def test_an_extrapolated_b_crit_is_warned():
    B = np.array([8.0, 32, 128, 512, 1024])
    S = curve(B, 300, 300 * 3000) * np.exp([0.005, -0.005, 0, 0.005, -0.005])
    with pytest.warns(CriticalBatchFitWarning, match="extrapolated"):
        f = fit_critical_batch(B, S)
    lo, hi = f.b_crit_interval
    assert lo > 1024 and lo < 3000 and hi > 3000 and math.isfinite(hi) and not f.b_crit_unbounded


def test_given_uncertainties_weight_the_points_and_too_much_scatter_widens_the_intervals():
    S = curve(B6) * np.exp([0.03, -0.02, 0.01, -0.03, 0.02, 0.0])
    by_err = fit_critical_batch(B6, S, steps_err=0.03 * S)
    z = 1.0                                    # +- 1 sd <-> level 0.6827
    by_interval = fit_critical_batch(B6, S, steps_low=S * np.exp(-0.03 * z),
                                     steps_high=S * np.exp(0.03 * z), points_level=0.682689492)
    assert by_interval.b_crit_interval == pytest.approx(by_err.b_crit_interval, rel=1e-6)
    assert "chi2(1)" in by_err.method and by_err.lack_of_fit[0].startswith("chi2")
    with pytest.warns(CriticalBatchFitWarning, match="scatter more"):
        tight = fit_critical_batch(B6, S, steps_err=0.002 * S)
    assert "scaled" in tight.method
    assert tight.b_crit_interval == pytest.approx(fit_critical_batch(B6, S).b_crit_interval,
                                                  rel=1e-6)


def test_replicates_get_a_lack_of_fit_test():
    B = np.repeat([8.0, 32, 128, 512, 2048], 3)
    noise = np.tile([0.004, -0.004, 0.0], 5)
    good = fit_critical_batch(B, curve(B) * np.exp(noise))
    assert good.lack_of_fit[0].startswith("F") and good.lack_of_fit[2] > 0.05
    bent = 700 + 2e4 / np.sqrt(B)                  # not a hyperbola
    with pytest.warns(CriticalBatchFitWarning, match="lack-of-fit"):
        bad = fit_critical_batch(B, bent * np.exp(noise))
    assert bad.lack_of_fit[2] < 0.01


def test_a_point_far_from_the_curve_is_flagged():
    B = np.geomspace(4, 16384, 13)
    noise = 0.01 * np.array([1, -1, 0.5, -0.5, 1, -1, 0, 1, -1, 0.5, -0.5, 1, -1])
    noise[6] = 0.2
    with pytest.warns(CriticalBatchFitWarning, match="far from the fitted curve"):
        fit_critical_batch(B, curve(B) * np.exp(noise))


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps_err=[1.0] * 6, steps_low=[1.0] * 6, steps_high=[2e5] * 6), "not both"),
    (dict(steps_low=[1.0] * 6), "both steps_low and steps_high"),
    (dict(steps_low=[1e9] * 6, steps_high=[2e9] * 6), "steps_low <= steps <= steps_high"),
    (dict(level=1.0), "level"),
    (dict(overhead=0.0), "overhead"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_critical_batch(B6, curve(B6), **kwargs)
    with pytest.raises(ValueError, match="finite"):
        fit_critical_batch([8, 64, math.inf], [100, 50, 40])


def test_critical_batch_keeps_its_fields_and_carries_the_fit():
    r = nqm.critical_batch(batch_sizes=B6, steps=curve(B6) * np.exp([0.03, -0.02, 0.01, -0.03,
                                                                      0.02, 0.0]))
    assert r.definition == "mccandlish_fit" and r.optimizer == "measured" and r.n_points == 6
    assert r.value == r.fit.b_crit and r.s_min == r.fit.s_min and r.residual_rms > 0
    assert "95% interval" in repr(r)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["value"] == r.value and d["fit"]["b_crit_interval"][0] < 900 < d["fit"]["b_crit_interval"][1]
    assert "fit" not in nqm.critical_batch(nqm.NQM.paper(100, bins=10)).to_dict()  # the model: no fit


# ------------------------------------------------------------------------------ CLI
def _cli(capsys, *argv):
    code = main(["critical-batch", *argv])
    return code, capsys.readouterr().out


def test_cli_prints_a_table_and_json(capsys):
    pts = ["--points", "64:9000", "256:2600", "1024:1100", "4096:700"]
    code, out = _cli(capsys, *pts)
    assert code == 0 and "95% interval" in out and "B_crit = E_min / S_min" in out
    assert "B_20, 20% over perfect scaling" in out and "CriticalBatch" not in out
    code, out = _cli(capsys, *pts, "--json", "--level", "0.9", "--overhead", "0.5")
    d = json.loads(out)
    assert d["level"] == 0.9 and d["b_overhead"] == pytest.approx(0.5 * d["b_crit"])
    code, out = _cli(capsys, "--points", "64:9000:8000:9500", "256:2600:2500:2700",
                     "1024:1100:1000:1200", "4096:700:650:750", "--json")
    assert json.loads(out)["sigma_log"] is not None


def test_cli_model_side_prints_a_table_not_a_repr(capsys):
    code, out = _cli(capsys, "--d", "100", "--bins", "10")
    assert code == 0 and "value:" in out and "CriticalBatchResult(" not in out


def test_cli_reads_a_csv_file(tmp_path, capsys):
    path = tmp_path / "points.csv"
    path.write_text("batch_size,steps,steps_err\n64,9000,300\n256,2600,100\n\n1024,1100,40\n"
                    "4096,700,30\n4096,720,30\n")
    code, out = _cli(capsys, "--csv", str(path), "--json")
    d = json.loads(out)
    assert code == 0 and d["n_points"] == 5 and "given uncertainties" in d["method"]
    plain = tmp_path / "plain.csv"
    plain.write_text("batch_size, steps\n64,9000\n256,2600\n1024,1100\n4096,700\n")
    _, by_csv = _cli(capsys, "--csv", str(plain), "--json")
    _, by_points = _cli(capsys, "--points", "64:9000", "256:2600", "1024:1100", "4096:700", "--json")
    assert json.loads(by_csv) == json.loads(by_points)


@pytest.mark.parametrize("text, match", [
    ("64,9000\n256,2600\n1024,1100\n", r"--csv \S+bad.csv: line 1 must be a header"),
    ("batch_size,steps\n64,9000\n256,abc\n", r"--csv \S+bad.csv: line 3: steps 'abc' is not a number"),
    ("batch_size,steps\n64,9000\n256,0\n", "line 3: steps must be > 0"),
    ("batch_size,steps\n64,9000,5\n", "line 2: expected 2 fields"),
    ("batch_size,step_err,steps\n64,1,9000\n", "unknown column"),
    ("batch_size,steps,steps_low\n64,9000,8000\n", "line 2: give both steps_low and steps_high"),
    ("", "empty"),
])
def test_cli_csv_errors_name_the_flag_the_file_and_the_line(tmp_path, capsys, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SystemExit) as e:
        main(["critical-batch", "--csv", str(path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and re.search(match, err), err


@pytest.mark.parametrize("argv, match", [
    (["--points", "64:0", "256:10", "1024:5"], "--points 64:0: STEPS must be > 0"),
    (["--points", "64:50", "256:80", "1024:100"], "--points: steps do not decrease"),
    (["--points", "64-9000"], "--points 64-9000: expected B:STEPS"),
    (["--points", "64:100:120:130"], "LOW <= STEPS <= HIGH"),
    (["--csv", "/nonexistent/p.csv"], "--csv /nonexistent/p.csv: cannot read"),
    (["--points", "64:9000", "--csv", "x.csv"], "not allowed with"),
    (["--points", "64:9000", "--level", "1.5"], "--level"),
])
def test_cli_point_errors_name_the_flag(capsys, argv, match):
    with pytest.raises(SystemExit) as e:
        main(["critical-batch", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and match in err and "Traceback" not in err
