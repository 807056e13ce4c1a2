"""Fig. 3b of Zhang et al. 2019: steps to reach risk 0.01 vs batch size for preconditioner powers
p in {0, .25, .5, .75} with an optimized piecewise-constant learning-rate schedule (solid; 10 pieces,
as the authors' notebook) and the best constant learning rate (dashed, the SGD curves of Fig. 3a);
black dashed: the information-theoretic lower bound d / (2 B target) (sections 3.5, 3.6.2).
Schedules close most of the gap to the bound at small batch sizes and none at large ones."""

from __future__ import annotations

from figures import _data as D
from figures import _style as S

NAME = "schedule_steps"
N_PIECES = 10


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(2, 20, 2, quick=args.quick)
    sw = D.schedules(B, n_pieces=N_PIECES)
    with S.context():
        fig, ax = S.subplots(1, width=5.6, height=4.4)
        ax = ax[0, 0]
        for i, p in enumerate(sw.powers):
            c = S.power_color(p)
            ax.plot(B, sw.steps[i], "-o", color=c, label=f"{S.power_label(p)}, optimized schedule")
            ax.plot(B, sw.constant_steps[i], "--", color=c, label=f"{S.power_label(p)}, constant lr")
        ax.plot(B, sw.lower_bound, "k--", lw=1.2, label="lower bound d/(2 B target)")
        ax.set_xlabel("batch size (examples)")
        ax.set_ylabel("steps to target risk 0.01")
        ax.set_ylim(bottom=1.0)
        S.log2_axis(ax, "x", every=2)
        S.log2_axis(ax, "y")
        ax.legend(ncol=1, fontsize=7, loc="lower left")
        ax.set_title("Fig. 3b: steps to target vs batch size, SGD with learning-rate schedules\n"
                     f"solid: optimized {N_PIECES}-piece schedule, dashed: best constant lr")
        S.note(fig, S.problem_note(D.paper_problem())
               + f"; target 0.01; schedules: {N_PIECES} pieces, rates at most the stability "
                 "limit, steps exact")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
