"""Fig. 3c of Zhang et al. 2019: optimized 50-piece learning-rate schedules of plain SGD (p = 0) for
batch sizes 2^4 .. 2^12, each the schedule with the fewest steps to risk 0.01 (section 3.6.2):
(a) learning rate vs step, (b) learning rate vs fraction of training, with the best
constant rate of each batch size dotted. A high rate is held, then decays roughly exponentially;
the final rate grows with B (Fig. 13)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from figures import _data as D
from figures import _style as S

NAME = "schedules"
N_PIECES = 50


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(4, 12, 2, quick=args.quick)
    runs = [D.optimized_schedule(b, 0.0, N_PIECES)
            for b in S.progress(B, quiet=args.quiet, desc="schedules")]
    colors = plt.get_cmap(S.SEQUENTIAL)(np.linspace(0.0, 0.85, len(B)))
    with S.context():
        fig, axes = S.subplots(2, height=3.9)
        ax_t, ax_f = axes[0, 0], axes[0, 1]
        for b, r, c in zip(B, runs, colors, strict=True):
            edges = r.schedule.boundaries.astype(float)
            label = f"B = $2^{{{int(np.log2(b))}}}$: {r.steps} steps"
            # baseline=None: the staircase only, no drop to the axis at the ends
            ax_t.stairs(r.schedule.lr, edges, baseline=None, color=c, lw=1.6, label=label)
            ax_f.stairs(r.schedule.lr, edges / edges[-1], baseline=None, color=c, lw=1.6,
                        label=f"B = $2^{{{int(np.log2(b))}}}$")
            ax_f.axhline(r.constant_lr, color=c, lw=0.9, ls=":")
        lr_max = runs[0].lr_max
        for ax in (ax_t, ax_f):
            ax.axhline(lr_max, color="k", lw=0.8, ls="--",
                       label=rf"stability limit $2/h_{{\max}}$ = {lr_max:.3g}")
            ax.set_ylabel("learning rate")
            S.log10_axis(ax, "y")
        ax_t.set_xlim(left=0.0)
        ax_t.set_xlabel("step")
        ax_t.set_title("(a) learning rate vs step (log lr: exponential decay is a line)")
        ax_t.legend(loc="upper right", fontsize=7)
        ax_f.set_xlim(0.0, 1.0)
        ax_f.set_xlabel("fraction of training (step / steps to target)")
        ax_f.set_title("(b) vs fraction of training; dotted: best constant lr")
        ax_f.legend(loc="lower left", fontsize=7)
        fig.suptitle(f"Fig. 3c: optimized {N_PIECES}-piece learning-rate schedules, SGD (p = 0), "
                     "fewest steps to risk 0.01")
        S.note(fig, S.problem_note(D.paper_problem())
               + "; each schedule: rates optimized (L-BFGS-B, exact risk), steps searched")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
