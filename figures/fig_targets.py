"""Fig. 11 of Zhang et al. 2019 (appendix D.5): steps to target vs batch size for target risks
0.1, 0.03, 0.01, 0.003, 0.001 (plain SGD, p = 0, learning rate tuned per batch size). The shape is
the same for every target; the critical batch size grows as the target gets harder."""

from __future__ import annotations

import numpy as np

from figures import _data as D
from figures import _style as S
from nqm import critical_batch

NAME = "targets"
TARGETS = (0.1, 0.03, 0.01, 0.003, 0.001)


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(2, 21, quick=args.quick)
    problem = D.paper_problem()
    colors = [matplotlib_cmap(i / (len(TARGETS) - 1)) for i in range(len(TARGETS))]
    with S.context():
        fig, ax = S.subplots(1, width=5.6, height=4.4)
        ax = ax[0, 0]
        pairs = list(zip(TARGETS, colors, strict=True))
        for tgt, col in S.progress(pairs, quiet=args.quiet, desc=NAME):
            sw = D.sweep(0.0, B, (0.0,), tgt)
            crit = critical_batch(problem, target=tgt).value
            ax.plot(B, sw.steps[0], "-o", color=col,
                    label=f"target {tgt:g}  (B_crit ≈ {crit:,.0f})")
        ax.set_xlabel("batch size (examples)")
        ax.set_ylabel("steps to target")
        S.log2_axis(ax, "x", every=2)
        S.log2_axis(ax, "y")
        ax.legend(title="SGD, lr tuned; B_crit: McCandlish E_min/S_min", fontsize=7.5,
                  title_fontsize=7.5, loc="upper right")
        ax.set_title("Fig. 11: steps to target vs batch size for several targets")
        S.note(fig, S.problem_note(problem))
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


def matplotlib_cmap(x: float):
    import matplotlib

    return matplotlib.colormaps[S.SEQUENTIAL](0.9 * float(np.clip(x, 0, 1)))


if __name__ == "__main__":
    main()
