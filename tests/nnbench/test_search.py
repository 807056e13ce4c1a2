"""nnbench.search: scales, stable quasi-random points, edge report."""

import math

import numpy as np
import pytest

from nnbench.search import Param, QuasiRandomSearch, SearchSpace, edge_report


def _space():
    return SearchSpace(
        (
            Param("lr", 1e-4, 1.0, "log"),
            Param("momentum", 0.5, 0.999, "reverse_log"),
            Param("decay_factor", 0.01, 1.0, "linear"),
        ),
        fixed={"eps": 1e-8},
    )


@pytest.mark.parametrize(
    "param, u, expected",
    [
        (Param("a", 2.0, 4.0, "linear"), 0.25, 2.5),
        (Param("lr", 1e-4, 1.0, "log"), 0.5, 1e-2),  # geometric midpoint
        (Param("m", 0.9, 0.999, "reverse_log"), 0.5, 1 - math.sqrt(0.1 * 0.001)),  # 1 - m geometric mean
    ],
)
def test_scales_by_hand(param, u, expected):
    assert param.from_unit(0.0) == pytest.approx(param.low, rel=1e-12)
    assert param.from_unit(1.0) == pytest.approx(param.high, rel=1e-12)
    assert param.from_unit(u) == pytest.approx(expected, rel=1e-12)
    assert param.to_unit(expected) == pytest.approx(u, rel=1e-12)


def test_reverse_log_is_uniform_in_log_one_minus_value():
    # independent check: the decades of 1 - m are equally populated
    p = Param("momentum", 0.0, 0.999, "reverse_log")
    space = SearchSpace((p,))
    values = np.array([v["momentum"] for v in QuasiRandomSearch(space, seed=1).points(3000)])
    decades = np.floor(-np.log10(1 - values)).astype(int)  # 0: m<0.9, 1: m<0.99, 2: m<0.999
    counts = np.bincount(decades, minlength=3)
    assert counts.sum() == 3000 and np.all(np.abs(counts - 1000) < 30), counts


def test_point_index_is_stable():
    search = QuasiRandomSearch(_space(), seed=7)
    first8 = search.points(8)
    first16 = search.points(16)
    assert first16[:8] == first8
    for i in (0, 5, 13):
        assert search.point(i) == pytest.approx(first16[i], rel=1e-12)
    # a fresh object with the same seed gives the same points; another seed does not
    assert QuasiRandomSearch(_space(), seed=7).point(11) == search.point(11)
    assert QuasiRandomSearch(_space(), seed=8).point(11) != search.point(11)


def test_points_in_range_and_fixed_values_passed():
    space = _space()
    pts = QuasiRandomSearch(space, seed=0).points(64)
    for pt in pts:
        assert set(pt) == {"lr", "momentum", "decay_factor", "eps"}
        assert pt["eps"] == 1e-8
        for p in space.params:
            assert p.low <= pt[p.name] <= p.high
    # quasi-random: the 64 points cover every octant of the unit cube
    units = np.array([[p.to_unit(pt[p.name]) for p in space.params] for pt in pts])
    octants = {tuple(row) for row in (units > 0.5).astype(int)}
    assert len(octants) == 8


def test_empty_space_gives_fixed_only():
    space = SearchSpace((), fixed={"lr": 0.1})
    search = QuasiRandomSearch(space, seed=0)
    assert search.point(3) == {"lr": 0.1}
    assert search.points(2) == [{"lr": 0.1}, {"lr": 0.1}]


def test_dict_round_trip():
    space = _space()
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_edge_report():
    space = _space()
    inside = {"lr": 1e-2, "momentum": 0.9, "decay_factor": 0.5, "eps": 1e-8}
    assert edge_report(space, inside) == {}
    edgy = {"lr": 0.9, "momentum": 0.5001, "decay_factor": 0.5}
    assert edge_report(space, edgy) == {"lr": "high", "momentum": "low"}
    with pytest.raises(ValueError, match="decay_factor"):
        edge_report(space, {"lr": 0.1, "momentum": 0.9})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="lr", low=0.0, high=1.0, scale="log"), "low > 0"),
        (dict(name="m", low=0.5, high=1.0, scale="reverse_log"), "high < 1"),
        (dict(name="a", low=2.0, high=1.0), "low < high"),
        (dict(name="a", low=float("nan"), high=1.0), "finite"),
        (dict(name="a", low=0.0, high=1.0, scale="cubic"), "scale"),
        (dict(name="", low=0.0, high=1.0), "name"),
    ],
)
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Param(**kwargs)


def test_bad_space_and_search():
    with pytest.raises(ValueError, match="duplicate"):
        SearchSpace((Param("lr", 0.1, 1.0), Param("lr", 0.1, 1.0)))
    with pytest.raises(ValueError, match="both searched and fixed"):
        SearchSpace((Param("lr", 0.1, 1.0),), fixed={"lr": 0.5})
    with pytest.raises(ValueError, match="seed"):
        QuasiRandomSearch(_space(), seed=-1)
    with pytest.raises(ValueError, match="trial index"):
        QuasiRandomSearch(_space(), seed=0).point(-2)
    with pytest.raises(ValueError, match="search space"):
        SearchSpace.from_dict({"nope": 1})


def test_focus_space_spans_best_trials_with_margin():
    from nnbench.search import focus_space

    space = SearchSpace((Param("lr", 1e-3, 1.0, "log"), Param("momentum", 0.0, 0.999, "reverse_log")),
                        {"eps": 1e-8})
    best = [{"lr": 0.01, "momentum": 0.9}, {"lr": 0.03, "momentum": 0.5}, {"lr": 0.02, "momentum": 0.99}]
    focused, widened = focus_space(space, best, margin=0.1)
    assert widened == {} and focused.fixed == {"eps": 1e-8}
    assert focused == focus_space(space, best, margin=0.1)[0]
    for p, q in zip(space.params, focused.params, strict=True):
        u = [p.to_unit(b[p.name]) for b in best]
        assert p.to_unit(q.low) == pytest.approx(max(0, min(u) - 0.1))
        assert p.to_unit(q.high) == pytest.approx(min(1, max(u) + 0.1))
        assert q.scale == p.scale


def test_focus_space_widens_at_an_edge():
    from nnbench.search import focus_space

    space = SearchSpace((Param("lr", 1e-3, 1.0, "log"), Param("momentum", 0.0, 0.999, "reverse_log")))
    focused, widened = focus_space(space, [{"lr": 0.98, "momentum": 0.0}], widen=0.5)
    # lr: half the log range beyond the top (10^1.5); momentum at 0 cannot go lower: not widened
    assert widened == {"lr": "high"}
    lr, momentum = focused.params
    assert lr.high == pytest.approx(10**1.5) and lr.low == pytest.approx(0.98 * 1e3**-0.15)  # 15% of 3 decades below
    assert momentum.low == 0.0
    focused, widened = focus_space(space, [{"lr": 1e-3, "momentum": 0.999}])
    assert widened == {"lr": "low", "momentum": "high"}
    assert focused.params[0].low == pytest.approx(10**-4.5) and 0.999 < focused.params[1].high < 1
    with pytest.raises(ValueError, match="at least one"):
        focus_space(space, [])
