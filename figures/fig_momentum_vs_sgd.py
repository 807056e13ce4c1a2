"""Fig. 9 of Zhang et al. 2019 (appendix D.3): the first term of the risk (eqn. 6, the noise-free
part, here computed exactly as the risk with noise-free gradients) of heavy-ball momentum with rate
lr (red) against plain SGD with the effective rate lr / (1 - beta) (blue), for several momenta at a
fixed effective rate. Normalised by the initial risk."""

from __future__ import annotations

import math

import numpy as np

from figures import _data as D
from figures import _style as S
from nqm import risk_curve

NAME = "momentum_vs_sgd"
EFFECTIVE_LR = 0.5                      # lr / (1 - beta), the same in every panel
MOMENTA = (0.5, 0.9, 0.99)


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    problem = D.paper_problem()
    ts = np.unique(np.round(np.geomspace(1, 2e5, 60 if args.quick else 300)))
    ts = np.concatenate([[0.0], ts])
    sgd = risk_curve(problem, ts, lr=EFFECTIVE_LR, batch_size=math.inf)
    with S.context():
        fig, axes = S.subplots(len(MOMENTA), height=3.4, sharey=True)
        for ax, beta in zip(axes[0], MOMENTA, strict=True):
            mom = risk_curve(problem, ts, lr=EFFECTIVE_LR * (1 - beta), batch_size=math.inf,
                             momentum=beta)
            ax.plot(ts[1:], mom.risk[1:] / mom.risk[0], color="C3",
                    label=f"momentum β = {beta:g}, lr = {EFFECTIVE_LR * (1 - beta):g}")
            ax.plot(ts[1:], sgd.risk[1:] / sgd.risk[0], "--", color="C0",
                    label=f"SGD, lr = {EFFECTIVE_LR:g} (= lr/(1-β))")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("steps")
            ax.set_title(f"1/(1-β) = {1 / (1 - beta):g}")
            ax.legend(loc="lower left")
        axes[0, 0].set_ylabel("noise-free risk / initial risk")
        fig.suptitle("Fig. 9: first term of the risk, momentum vs SGD at the effective rate "
                     f"(lr/(1-β) = {EFFECTIVE_LR:g}, any batch size)")
        S.note(fig, S.problem_note(problem) + "; first term = risk with noise-free gradients")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
