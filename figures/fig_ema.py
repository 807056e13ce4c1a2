"""EMA of the iterates: steps to reach risk 0.01 vs batch size, SGD + EMA vs SGD.

Powers p in {0, .25, .5, .75}: SGD + an exponential moving average of the iterates with (lr, gamma)
tuned jointly (solid) vs SGD with lr tuned (dashed, Fig. 3a); and the tuned averaging horizon
1 / (1 - gamma). Not a figure of Zhang et al. 2019, which names (Polyak) averaging as a way to
lower the steady-state risk (section 3.3). Averaging cuts the steps at small batch sizes, where
noise dominates, and does nothing for large ones."""

from __future__ import annotations

from figures import _data as D
from figures import _style as S

NAME = "ema"


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(2, 20, 2, quick=args.quick)
    sgd = D.sweep(0.0, B)
    ema = D.ema_sweep(B)
    with S.context():
        fig, axes = S.subplots(2, width=10.4, height=4.4)
        ax, ax_g = axes[0, 0], axes[0, 1]
        S.steps_vs_batch(ax, B, sgd.powers, ema.steps, sgd.steps, sgd.lower_bound,
                         solid_label="SGD + EMA", dashed_label="SGD")
        for i, p in enumerate(sgd.powers):
            ax_g.plot(B, 1.0 / (1.0 - ema.ema[i]), "-o", color=S.power_color(p),
                      label=S.power_label(p))
        ax.set_title("(a) steps to target: solid SGD + EMA (lr, γ tuned),\n"
                     "dashed SGD (lr tuned)")
        ax_g.set_xlabel("batch size (examples)")
        ax_g.set_ylabel("averaging horizon 1 / (1 - γ) (steps)")
        S.log2_axis(ax_g, "x", every=2)
        S.log2_axis(ax_g, "y", every=2)
        ax_g.legend(fontsize=7, loc="upper right")
        ax_g.set_title("(b) tuned EMA decay γ as an averaging horizon")
        fig.suptitle("EMA of the iterates: steps to risk 0.01 vs batch size, with and without "
                     "averaging")
        S.note(fig, S.problem_note(D.paper_problem())
               + "; EMA x̄ ← γ x̄ + (1 - γ) x, risk measured at x̄")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
