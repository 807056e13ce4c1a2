"""Fig. 12 of Zhang et al. 2019 (appendix D.6): optimal learning rate vs batch size for
preconditioner powers p in {0, .25, .5, .75}: (a) plain SGD, (b) momentum fixed at 0.9,
(c) momentum tuned; (b) and (c) show the effective rate lr / (1 - momentum), with (a) dashed for
comparison. The optimal (effective) rate grows linearly with B, then levels off (SGD: at the
stability limit 2 / h_max)."""

from __future__ import annotations

from figures import _data as D
from figures import _style as S
from nqm import stability_limit

NAME = "optimal_lr"


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    B = D.batch_sizes(2, 21, quick=args.quick)
    panels = [("(a) no momentum: lr", D.sweep(0.0, B)),
              ("(b) momentum 0.9: lr / (1 - 0.9)", D.sweep(0.9, B)),
              ("(c) tuned momentum: lr / (1 - β)", D.sweep("tune", B))]
    sgd = panels[0][1]
    limit = stability_limit(D.paper_problem())
    with S.context():
        fig, axes = S.subplots(3, height=3.8, sharey=True)
        for k, (title, sw) in enumerate(panels):
            ax = axes[0, k]
            for i, p in enumerate(sw.powers):
                c = S.power_color(p)
                ax.plot(B, sw.effective_lr[i], "-o", color=c, label=S.power_label(p))
                if k > 0:
                    ax.plot(B, sgd.lr[i], "--", color=c, lw=1.0, alpha=0.8)
            ax.axhline(limit, color="k", lw=0.8, ls=":")
            if k == 0:
                ax.text(B[0], limit * 1.25, f"SGD stability limit 2/h_max = {limit:.3g}",
                        fontsize=7)
            ax.set_title(title)
            ax.set_xlabel("batch size (examples)")
            S.log2_axis(ax, "x", every=3)
            if k == 0:
                ax.set_ylabel("optimal (effective) learning rate")
        S.log2_axis(axes[0, 0], "y", every=3)
        axes[0, 0].legend(loc="lower right", title="power (P = H^-p)", title_fontsize=7.5)
        axes[0, 1].plot([], [], "k--", lw=1.0, label="dashed: SGD, from (a)")
        axes[0, 1].legend(loc="lower right")
        fig.suptitle("Fig. 12: optimal learning rate vs batch size (minimising exact steps to "
                     "risk 0.01)")
        S.note(fig, S.problem_note(D.paper_problem()))
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
