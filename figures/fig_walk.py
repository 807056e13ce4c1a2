"""Xing et al. 2018 ("A walk with SGD"), in the NQM: the expected loss on the segment between
consecutive SGD iterates (exact), the height of the iterates above the valley floor of that
segment (exact) and the cosine between consecutive mini-batch gradients (Monte Carlo on the exact
d = 10^4 spectrum, with the closed-form ratio of expectations for comparison).

In the NQM's steady state the learning rate sets the height above the floor (Xing's observation);
in the transient the iterates still descend (the floor is at the far end of the segment). Xing et
al. see the cosine depend on B (more negative at large B) and hardly on lr. In the NQM, B matters
in the transient: at large B the cosine follows the noise-free walk, near +1 while lr h_max < 1
(steady descent) and negative when lr h_max > 1 (bouncing across the stiff directions); small B
pulls it to the steady-state value, which is set by lr alone (-lr h / 2 per dimension).
"""

from __future__ import annotations

import numpy as np

from figures import _data as D
from figures import _style as S
from nqm import NQM
from nqm.walk import gradient_cosine_monte_carlo, walk_stats

NAME = "walk"
T_SEGMENT = 100                        # step at which the segment / height are evaluated
LRS = (0.25, 1.0, 1.9)
BATCHES = (16.0, 256.0, 4096.0)
LR_FIXED, B_FIXED = 1.0, 256.0


def _height(problem, t, lr, B) -> float:
    """E L(theta_t) minus the lowest expected loss on the segment to theta_{t+1}."""
    w = walk_stats(problem, t, lr=lr, batch_size=B)
    return float(w.loss - w.valley_loss)


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    problem = D.paper_problem()
    exact = NQM.paper(bins=None)                      # Monte Carlo needs the real dimensions
    runs = 4 if args.quick else 8
    t_max = 60 if args.quick else 1000
    ts = np.unique(np.round(np.geomspace(1, t_max, 12 if args.quick else 40)))
    ts = np.concatenate([[0.0], ts])
    s = np.linspace(-0.5, 1.5, 101)
    lr_grid = np.geomspace(2 ** -6, 1.98, 30 if args.quick else 120)

    configs = [("B", b, LR_FIXED, b) for b in BATCHES] + [("lr", lr, lr, B_FIXED) for lr in LRS]
    mc = {}
    for _kind, _val, lr, B in S.progress(configs, quiet=args.quiet, desc=NAME):
        if (lr, B) not in mc:
            mc[(lr, B)] = (gradient_cosine_monte_carlo(exact, ts, lr=lr, batch_size=B, runs=runs,
                                                       seed=1),
                           walk_stats(problem, ts, lr=lr, batch_size=B))

    with S.context():
        fig, axes = S.subplots(2, nrows=2, width=10.5, height=3.6)
        a, b = axes[0]
        c, d = axes[1]
        cols = ("C0", "C1", "C3")
        for lr, col in zip(LRS, cols, strict=True):
            w = walk_stats(problem, [T_SEGMENT], lr=lr, batch_size=B_FIXED)
            ref = w.loss[0]
            a.plot(s, w.segment_loss(s)[0] / ref, color=col, label=f"lr = {lr:g}")
            a.plot([0, 1], [1.0, w.loss_next[0] / ref], "o", color=col)
            a.plot(w.valley_s, w.valley_loss / ref, "v", color=col, ms=6)
        a.set_xlabel(r"$s$  (point $\theta_t + s\,(\theta_{t+1} - \theta_t)$; dots: iterates, "
                     "▼: valley floor)")
        a.set_ylabel(r"expected loss / $E\,L(\theta_t)$")
        a.set_title(f"(a) loss on the segment at t = {T_SEGMENT}, B = {B_FIXED:g}")
        a.legend(fontsize=7)
        for B, col in zip(BATCHES, cols, strict=True):
            height = np.array([_height(problem, T_SEGMENT, lr, B) for lr in lr_grid])
            height_ss = np.array([_height(problem, np.inf, lr, B) for lr in lr_grid])
            b.plot(lr_grid, height, color=col, label=f"B = {B:g}, t = {T_SEGMENT}")
            b.plot(lr_grid, height_ss, ":", color=col, label=f"B = {B:g}, steady state")
        b.text(0.02, 0.62, f"t = {T_SEGMENT}: still descending, floor at s = 1, height = one-step\n"
               f"decrease ≈ $1/(2t)$ for $h_i = 1/i$ whatever lr and B;\nsteady state: height ∝ lr "
               f"(Xing: lr sets the height)", transform=b.transAxes, fontsize=7, va="top",
               bbox=dict(facecolor="white", alpha=0.85, edgecolor="none"))
        b.set_xlabel("learning rate")
        b.set_ylabel("height above the valley floor")
        b.set_xscale("log", base=2)
        b.set_yscale("log")
        b.set_title(r"(b) height of $\theta_t$ above the valley floor vs lr")
        b.legend(fontsize=6.5, ncol=2)
        for ax, kind, values in ((c, "B", BATCHES), (d, "lr", LRS)):
            for val, col in zip(values, cols, strict=True):
                lr, B = (LR_FIXED, val) if kind == "B" else (val, B_FIXED)
                sample, w = mc[(lr, B)]
                x = sample.steps + 1                     # log axis: plot t + 1
                ax.plot(x, sample.mean, color=col, label=f"{kind} = {val:g}: Monte Carlo mean")
                ax.fill_between(x, sample.mean - sample.std, sample.mean + sample.std,
                                color=col, alpha=0.15)
                ax.plot(w.steps + 1, w.gradient_cosine, "--", color=col, lw=1.0)
            ax.plot([], [], "k--", lw=1.0, label="ratio of expectations (closed form)")
            ax.axhline(0, color="k", lw=0.6)
            ax.set_xscale("log")
            ax.set_xlabel("step $t + 1$")
            ax.set_ylabel(r"$\cos(g_t, g_{t+1})$")
            fixed = f"lr = {LR_FIXED:g}" if kind == "B" else f"B = {B_FIXED:g}"
            ax.set_title(f"({'c' if kind == 'B' else 'd'}) gradient cosine, {fixed}, "
                         f"{runs} runs (band: ±1 sd)")
            ax.legend(fontsize=6.5)
        fig.suptitle("Xing et al.'s walk with SGD, in the NQM (plain SGD, p = 0)")
        S.note(fig, S.problem_note(problem) + "; Monte Carlo on the unbinned $d = 10^4$ spectrum; "
               "the NQM is convex: no barriers to cross")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
