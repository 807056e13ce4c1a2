"""Fig. 13 of Zhang et al. 2019 (appendix D.7): final learning rate (rate of the last piece) of the
optimized 50-piece SGD schedule vs batch size, preconditioner powers p in {0, .25, .5, .75}
(solid), with the best constant rate dashed (Fig. 12a) and a slope-1 guide: like the constant
rate, the final rate scales linearly with B below the critical batch size, then saturates at the
stability limit 2/h_max (section 3.6.2)."""

from __future__ import annotations

import numpy as np

from figures import _data as D
from figures import _style as S

NAME = "final_lr"
N_PIECES = 50


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(0, 20, quick=args.quick)
    sw = D.schedules(B, n_pieces=N_PIECES)
    Bv = np.asarray(B)
    with S.context():
        fig, ax = S.subplots(1, width=5.6, height=4.4)
        ax = ax[0, 0]
        for i, p in enumerate(sw.powers):
            c = S.power_color(p)
            ax.plot(Bv, sw.final_lr[i], "-o", color=c, label=f"{S.power_label(p)}, final lr")
            ax.plot(Bv, sw.constant_lr[i], "--", color=c, lw=1.0,
                    label=f"{S.power_label(p)}, best constant lr")
        # slope-1 guide through the p = 0 final rate at the smallest batch size
        guide = sw.final_lr[0, 0] * Bv / Bv[0]
        keep = guide <= 4.0
        ax.plot(Bv[keep], guide[keep], color="k", lw=0.9, ls=":", label="∝ B (slope 1)")
        ax.set_xlabel("batch size (examples)")
        ax.set_ylabel("learning rate")
        S.log2_axis(ax, "x", every=2)
        S.log2_axis(ax, "y", every=2)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"Fig. 13: final rate of the optimized {N_PIECES}-piece schedule vs batch "
                     "size\n(SGD, fewest steps to risk 0.01; dashed: best constant rate)")
        S.note(fig, S.problem_note(D.paper_problem())
               + "; rates bounded by the stability limit 2/h_max = 2")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
