"""Fig. 2 of Zhang et al. 2019: convergence rate and steady-state risk of heavy-ball momentum as
functions of the momentum beta, for ONE dimension, against plain SGD at the effective learning rate
lr / (1 - beta) (paper section 3.2, eqn. 7).

Momentum and SGD at lr / (1 - beta) agree while the dimension is overdamped; past critical damping
(beta > (1 - sqrt(lr h))^2) the rate of momentum is stuck at sqrt(beta).
"""

from __future__ import annotations

import numpy as np

from figures import _style as S
from nqm import NQM, steady_state_risk
from nqm.rates import convergence_rate

NAME = "momentum_rate"
H, LR, BATCH = 1.0, 0.01, 1.0          # one dimension h = c = 1, lr h = 0.01 (a small rate)


def main(argv=None):
    args = S.parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    one = NQM.from_spectrum([H], bins=None, name=f"one dimension h = c = {H:g}")
    betas = np.linspace(0.0, 0.99, 60 if args.quick else 400)
    rate_m = np.array([convergence_rate(one, lr=LR, momentum=b)[0] for b in betas])
    rate_s = np.array([convergence_rate(one, lr=LR / (1 - b))[0] for b in betas])
    ssr_m = np.array([steady_state_risk(one, lr=LR, batch_size=BATCH, momentum=b) for b in betas])
    ssr_s = np.array([steady_state_risk(one, lr=LR / (1 - b), batch_size=BATCH) for b in betas])
    beta_crit = (1.0 - np.sqrt(LR * H)) ** 2          # where the two roots of eqn. 7 meet

    with S.context():
        fig, ax = S.subplots(2)
        a, b = ax[0]
        a.plot(betas, rate_m, color="C3", label="momentum (spectral radius, eqn. 7)")
        a.plot(betas, rate_s, "--", color="C0", label="SGD at effective lr = lr/(1-β)")
        b.plot(betas, ssr_m, color="C3", label="momentum")
        b.plot(betas, ssr_s, "--", color="C0", label="SGD at effective lr = lr/(1-β)")
        for axis in (a, b):
            axis.axvline(beta_crit, color="k", lw=0.8, ls=":")
            axis.set_xlabel("momentum β")
        a.text(beta_crit, 0.45, " critical damping\n β = (1-√(lr h))²",
               transform=a.get_xaxis_transform(), fontsize=7.5, ha="right")
        a.set_ylabel("convergence rate of E[θ] (per step)")
        a.set_title("(a) convergence rate")
        a.set_ylim(0.5, 1.02)
        b.set_yscale("log")
        b.set_ylabel("steady-state risk")
        b.set_title("(b) steady-state risk")
        a.legend(loc="lower left")
        b.legend(loc="upper left")
        fig.suptitle(f"Fig. 2: heavy-ball momentum on one dimension (h = c = {H:g}, lr = {LR:g}, "
                     f"batch size {BATCH:g})")
        return S.save(fig, args.out, NAME, quick=args.quick, docs=args.docs)


if __name__ == "__main__":
    main()
