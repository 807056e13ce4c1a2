"""Jastrzebski et al. 2017 ("Three factors influencing minima in SGD"), in the NQM: rescaling
lr -> c lr and B -> c B keeps lr / B, and with it the SDE limit of SGD, so the risk as a function of
EXAMPLES processed is unchanged while c is small; it breaks down as c lr approaches the stability
limit 2 / h_max, where the discrete step (1 - c lr h)^2 no longer matches exp(-2 c lr h) and the
noise floor of the stiffest directions grows like 1 / (2 - c lr h)."""

from __future__ import annotations

import numpy as np

from figures import _data as D
from figures import _style as S
from nqm import risk_curve, stability_limit, steps_to_target

NAME = "rescaling"
LR0, B0, TARGET = 2.0 ** -6, 16.0, 0.01     # lr / B = 2^-10 throughout


def _examples(problem, c: float) -> float:
    """Examples to target at lr = c lr0, B = c B0; NaN where the noise floor is above the target."""
    try:
        return c * B0 * steps_to_target(problem, lr=c * LR0, batch_size=c * B0,
                                        target=TARGET).steps
    except ValueError:
        return np.nan


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    problem = D.paper_problem()
    c_limit = stability_limit(problem) / LR0            # c at which c lr0 = 2 / h_max
    cs = 2.0 ** np.linspace(-4, np.log2(c_limit) - 1e-6, 30 if args.quick else 160)
    examples = np.array([_examples(problem, c)
                         for c in S.progress(cs, quiet=args.quiet, desc=NAME)])
    reachable = np.isfinite(examples)
    c_unreach = cs[~reachable].min() if np.any(~reachable) else None
    curves_c = [2.0 ** -4, 1.0, 16.0, 64.0, 112.0, 124.0]
    n_ex = np.geomspace(B0 * 2.0 ** -4, 3e7, 80 if args.quick else 300)
    with S.context():
        fig, axes = S.subplots(2, width=11.0, height=4.2)
        a, b = axes[0]
        colors = [S.matplotlib.colormaps["plasma"](0.85 * i / (len(curves_c) - 1))
                  for i in range(len(curves_c))]
        for c, col in zip(curves_c, colors, strict=True):
            B = c * B0
            ts = np.unique(np.floor(n_ex / B))
            rc = risk_curve(problem, ts, lr=c * LR0, batch_size=B)
            a.plot(ts * B, rc.risk, color=col, label=f"c = {c:g} (lr = {c * LR0:.3g}, B = {B:g})")
        a.axhline(TARGET, color="k", lw=0.8, ls=":")
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("examples processed (B x steps)")
        a.set_ylabel("risk")
        a.set_title("(a) risk vs examples: the curves coincide for small c")
        a.legend(fontsize=7, loc="center left")
        b.plot(cs, examples, color="C0", label="examples to target, lr = c lr0, B = c B0")
        if c_unreach is not None:
            b.axvspan(c_unreach, c_limit, color="#d9d9d9")
        b.axvline(c_limit, color="r", ls="--", lw=1.0)
        b.axvspan(c_limit, cs[-1] * 1.5, color="#4d4d4d", alpha=0.7)
        msg = f"unstable for c ≥ (2/h_max)/lr0 = {c_limit:.4g} (dark)"
        if c_unreach is not None:
            msg = f"target unreachable (floor > 0.01) for c ≥ {c_unreach:.5g} (light)\n" + msg
        b.text(0.03, 0.84, msg, transform=b.transAxes, fontsize=7.5, va="top")
        b.set_xlim(cs[0], cs[-1] * 1.5)
        b.set_xlabel("rescaling factor c")
        b.set_ylabel("examples to target risk 0.01")
        S.log2_axis(b, "x", every=1)
        b.set_yscale("log")
        b.set_title("(b) flat while c is small, rising as c lr0 nears 2/h_max")
        b.legend(fontsize=7, loc="upper left")
        fig.suptitle(f"Rescaling lr → c lr, B → c B (lr0 = 2^-6, B0 = {B0:g}, lr/B = 2^-10), SGD")
        S.note(fig, S.problem_note(problem) + "; Jastrzebski et al. rescale ResNets; the NQM "
               "shows the same invariance and its end at the stability limit")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
