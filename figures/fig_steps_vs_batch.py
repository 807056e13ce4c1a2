"""Fig. 3a of Zhang et al. 2019: steps to reach risk 0.01 vs batch size for preconditioner powers
p in {0, .25, .5, .75}; plain SGD (dashed, tuned lr) and heavy-ball momentum (solid, tuned lr and
momentum); black dashed: the information-theoretic lower bound d / (2 B target) (section 3.5)."""

from __future__ import annotations

from figures import _data as D
from figures import _style as S

NAME = "steps_vs_batch"


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(2, 20, 2, quick=args.quick)
    sgd = D.sweep(0.0, B)
    mom = D.sweep("tune", B)
    with S.context():
        fig, ax = S.subplots(1, width=5.6, height=4.4)
        ax = ax[0, 0]
        S.steps_vs_batch(ax, B, sgd.powers, mom.steps, sgd.steps, sgd.lower_bound,
                         solid_label="momentum", dashed_label="SGD", ncol=2)
        ax.set_title("Fig. 3a: steps to target vs batch size (constant lr, tuned)\n"
                     "solid: momentum (lr, β tuned), dashed: SGD (lr tuned)")
        S.note(fig, S.problem_note(D.paper_problem()))
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
