"""Park et al. 2019 ("Optimal SGD hyperparameters for fully connected networks"), in the NQM: SGD's
noise is governed by the temperature g = lr N / (2 B (1 - m)). The NQM is online (no training-set
size N), so here g = lr / (2 B (1 - m)), which leaves N as a constant factor.

(a) steady-state risk of many (lr, B, m) combinations against g: one line, risk = g sum(c) / 2, at
small g; off it only near the stability limit. (b) the ratio to that line against lr / lr_max.
(c) the optimal temperature g_opt = lr_opt / (2 B (1 - m_opt)) that minimises steps to target is
constant in B below the critical batch size (Park et al.: g_opt depends on the data, not on B).
"""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from figures import _data as D
from figures import _style as S
from nqm import stability_limit, steady_state_risk

NAME = "temperature"
MOMENTA = (0.0, 0.5, 0.9, 0.99)
MARKERS = ("o", "s", "^", "D")


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    problem = D.paper_problem()
    rng = np.random.default_rng(0)                    # fixed: the figure is reproducible
    n = 60 if args.quick else 500
    rows = []                                         # (m, g, risk, lr / lr_max)
    for _ in S.progress(range(n), quiet=args.quiet, desc=NAME):
        m = MOMENTA[rng.integers(len(MOMENTA))]
        B = 2.0 ** rng.uniform(0, 16)
        frac = 10.0 ** rng.uniform(-4, np.log10(0.995))
        lr = frac * stability_limit(problem, momentum=m)
        rows.append((m, lr / (2 * B * (1 - m)),
                     steady_state_risk(problem, lr=lr, batch_size=B, momentum=m), frac))
    rows = np.array(rows)
    # slope of the small-g line, from the library at a tiny rate: risk / g -> sum(c) / 2
    tiny = 1e-9
    slope = steady_state_risk(problem, lr=tiny, batch_size=1.0) / (tiny / 2)
    B = D.batch_sizes(2, 21, quick=args.quick)
    sweeps = {"SGD": D.sweep(0.0, B, (0.0,)), "tuned momentum": D.sweep("tune", B, (0.0,))}

    with S.context():
        fig, axes = S.subplots(3, width=13.5, height=4.0)
        a, b, c = axes[0]
        for m, mk in zip(MOMENTA, MARKERS, strict=True):
            sel = rows[:, 0] == m
            sc = a.scatter(rows[sel, 1], rows[sel, 2], c=np.log10(rows[sel, 3]), marker=mk,
                           s=12, cmap="plasma", vmin=-4, vmax=0, label=f"m = {m:g}")
            b.scatter(rows[sel, 3], rows[sel, 2] / (slope * rows[sel, 1]), marker=mk, s=12,
                      color="k", alpha=0.5, label=f"m = {m:g}")
        gs = np.geomspace(rows[:, 1].min(), rows[:, 1].max(), 10)
        a.plot(gs, slope * gs, "k--", lw=1.0, label=f"risk = g · {slope:.3g}  (small-g limit)")
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("temperature g = lr / (2 B (1 - m))")
        a.set_ylabel("steady-state risk")
        a.set_title("(a) the noise floor is a function of g")
        handles, labels = a.get_legend_handles_labels()
        proxies = [Line2D([], [], ls="", marker=mk, color="#777777") for mk in MARKERS]
        a.legend(proxies + handles[len(MOMENTA):], labels, fontsize=7, loc="upper left")
        cb = fig.colorbar(sc, ax=a, pad=0.01)
        cb.set_label("log10(lr / stability limit)")
        b.set_xscale("log")
        b.set_yscale("log")
        b.set_xlabel("lr / stability limit")
        b.set_ylabel("steady-state risk / (g · slope)")
        b.set_title("(b) collapse breaks only near the stability limit")
        b.legend(fontsize=7, loc="upper left")
        for (label, sw), col in zip(sweeps.items(), ("C0", "C3"), strict=True):
            g_opt = sw.lr[0] / (2 * sw.batch_sizes * (1 - sw.momentum[0]))
            c.plot(sw.batch_sizes, g_opt, "-o", color=col, label=label)
        c.set_xlabel("batch size (examples)")
        c.set_ylabel("optimal temperature g_opt")
        c.set_title("(c) g of the fastest constant lr (target 0.01)")
        S.log2_axis(c, "x", every=3)
        c.set_yscale("log")
        c.legend(fontsize=7)
        fig.suptitle("Park et al.'s temperature in the NQM (paper problem, p = 0)")
        S.note(fig, S.problem_note(problem) + "; Park's N (training-set size) has no NQM analogue "
               "(online): g omits it")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
