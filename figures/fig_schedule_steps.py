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
        S.steps_vs_batch(ax, B, sw.powers, sw.steps, sw.constant_steps, sw.lower_bound,
                         solid_label="optimized schedule", dashed_label="constant lr")
        ax.set_title("Fig. 3b: steps to target vs batch size, SGD with learning-rate schedules\n"
                     f"solid: optimized {N_PIECES}-piece schedule, dashed: best constant lr")
        S.note(fig, S.problem_note(D.paper_problem())
               + f"; target 0.01; schedules: {N_PIECES} pieces, rates at most the stability "
                 "limit, steps exact")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
