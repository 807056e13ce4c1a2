"""Myrtle ("How to train your ResNet 5: hyperparameters"), in the NQM: heat maps over (lr, B) and
(lr, 1 - momentum) with the 45-degree flat directions lr / B = const and lr / (1 - momentum) =
const, and where they end.

(a) SGD, examples to target (B x steps; the Myrtle plots fix the number of epochs, i.e. examples):
constant along lr / B until the learning rate meets the stability limit 2 / h_max or the batch
size passes the critical batch size. (b) heavy-ball momentum at a fixed batch size, steps to
target: constant along lr / (1 - m) while lr stays small, ending at the stability limit
lr < 2 (1 + m) / h_max and where the floor lr c / (4 B (1 - m)) rises above the target.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from figures import _data as D
from figures import _style as S
from nqm import optimal_lr, stability_limit, steps_to_target

NAME = "flat_directions"
TARGET = 0.01
BATCH_B = 4096.0                        # batch size of panel (b)


def _grid(f, xs, ys, problem, limit_of, quiet, desc):
    """value f(x, y) on the grid; NaN where unreachable; mask of unstable cells."""
    val = np.full((ys.size, xs.size), np.nan)
    unstable = np.zeros_like(val, dtype=bool)
    for j, y in S.progress(list(enumerate(ys)), quiet=quiet, desc=desc):
        lim = limit_of(y)
        for i, x in enumerate(xs):
            if x >= lim:
                unstable[j, i] = True
                continue
            try:
                val[j, i] = f(x, y)
            except ValueError:          # target unreachable: steady-state risk above it
                pass
    return val, unstable


def _draw(ax, xs, ys, val, unstable, cbar_label, fig):
    lv = np.log2(val)
    finite = lv[np.isfinite(lv)]
    mesh = ax.pcolormesh(xs, ys, np.ma.masked_invalid(lv), cmap="viridis_r", shading="nearest",
                         vmin=finite.min(), vmax=min(finite.max(), finite.min() + 14))
    # unreachable (NaN but stable): light grey; unstable: dark grey
    ax.pcolormesh(xs, ys, np.ma.masked_where(~(np.isnan(val) & ~unstable), np.ones_like(val)),
                  cmap=ListedColormap(["#d9d9d9"]), shading="nearest")
    ax.pcolormesh(xs, ys, np.ma.masked_where(~unstable, np.ones_like(val)),
                  cmap=ListedColormap(["#4d4d4d"]), shading="nearest")
    cb = fig.colorbar(mesh, ax=ax, pad=0.02)
    cb.set_label(cbar_label)
    cb.ax.yaxis.set_major_formatter(
        __import__("matplotlib").ticker.FuncFormatter(lambda v, _p: f"$2^{{{v:.0f}}}$"))
    ax.legend(handles=[Patch(color="#d9d9d9", label="target unreachable (floor above it)"),
                       Patch(color="#4d4d4d", label="unstable (lr above limit)")],
              loc="lower right", fontsize=7)


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    problem = D.paper_problem()
    n = 16 if args.quick else 56

    # (a) SGD over (lr, B): examples to target
    lrs = 2.0 ** np.linspace(-12, 1.5, n)
    Bs = 2.0 ** np.linspace(0, 18, n)
    sgd_limit = stability_limit(problem)
    ex, un_a = _grid(lambda lr, B: B * steps_to_target(problem, lr=lr, batch_size=B,
                                                       target=TARGET).steps,
                     lrs, Bs, problem, lambda _B: sgd_limit, args.quiet, f"{NAME} (a)")
    ridge = D.sweep(0.0, D.batch_sizes(0, 18, quick=args.quick), (0.0,))

    # (b) heavy ball over (lr, 1 - m) at B = BATCH_B: steps to target
    lrs_b = 2.0 ** np.linspace(-12, 2.5, n)
    oms = 2.0 ** np.linspace(-10, 0, n)
    st, un_b = _grid(lambda lr, om: steps_to_target(problem, lr=lr, batch_size=BATCH_B,
                                                    momentum=1 - om, target=TARGET).steps,
                     lrs_b, oms, problem,
                     lambda om: stability_limit(problem, momentum=1 - om), args.quiet,
                     f"{NAME} (b)")
    oms_r = oms[:: max(1, n // 14)][:-1]
    ridge_b = [optimal_lr(problem, batch_size=BATCH_B, momentum=1 - om, target=TARGET).lr
               for om in oms_r]

    with S.context():
        fig, axes = S.subplots(2, width=11.5, height=4.8)
        a, b = axes[0]
        _draw(a, lrs, Bs, ex, un_a, "examples to target (B x steps)", fig)
        for k in range(-16, 6, 2):                          # lines lr / B = 2^k
            a.plot(lrs, lrs / 2.0 ** k, color="w", lw=0.6, ls=":", alpha=0.8)
        a.plot(ridge.lr[0], ridge.batch_sizes, "r.-", lw=1.0, label="optimal lr per B")
        a.axvline(sgd_limit, color="r", lw=1.0, ls="--", label=r"stability limit $2/h_{\max}$")
        a.set_xlim(lrs[0], lrs[-1])
        a.set_ylim(Bs[0], Bs[-1])
        a.set_xlabel("learning rate")
        a.set_ylabel("batch size (examples)")
        a.set_title("(a) SGD: examples to target over (lr, B)\n"
                    "dotted: lr/B = const (flat until the limit or the critical B)")
        S.log2_axis(a, "x", every=2)
        S.log2_axis(a, "y", every=2)
        handles, labels = a.get_legend_handles_labels()
        leg = a.get_legend()
        # upper left: the optimal-lr ridge and the limit run through the lower right
        a.legend(handles=leg.legend_handles + handles, loc="upper left", fontsize=7)

        _draw(b, lrs_b, oms, st, un_b, "steps to target", fig)
        for k in range(-14, 10, 2):                         # lines lr / (1 - m) = 2^k
            b.plot(lrs_b, lrs_b / 2.0 ** k, color="w", lw=0.6, ls=":", alpha=0.8)
        b.plot(ridge_b, oms_r, "r.-", lw=1.0, label="optimal lr per momentum")
        b.set_xlim(lrs_b[0], lrs_b[-1])
        b.set_ylim(oms[0], oms[-1])
        b.set_xlabel("learning rate")
        b.set_ylabel("1 - momentum")
        b.set_title(f"(b) heavy ball, B = {BATCH_B:g}: steps to target over (lr, 1 - m)\n"
                    "dotted: lr/(1-m) = const (flat while lr is small)")
        S.log2_axis(b, "x", every=2)
        S.log2_axis(b, "y", every=2)
        leg = b.get_legend()
        hb, _ = b.get_legend_handles_labels()
        b.legend(handles=leg.legend_handles + hb, loc="lower right", fontsize=7)
        fig.suptitle(f"Myrtle's flat directions in the NQM (target risk {TARGET:g})")
        S.note(fig, S.problem_note(problem) + "; Myrtle's third direction, lr x weight decay, "
               "needs scale-invariant weights (batch norm), which the NQM does not have")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
