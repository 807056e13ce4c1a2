"""figures: regenerate every NQM figure of Zhang et al. 2019 and the seed papers' phenomena.

``python -m figures [--quick] [--out DIR] [--only NAME ...] [--docs [DIR]]`` runs them all; each
``figures/fig_<name>.py`` is one figure with ``main(argv=None)``, ``--quick`` and ``--out`` and only
calls the ``nqm`` library. Output: ``figures/out/<name>.png`` and ``.pdf``.
"""

# name -> what it shows (the order in which ``python -m figures`` runs them)
FIGURES = {
    "momentum_rate": "Fig. 2: convergence rate and steady-state risk vs momentum, one dimension",
    "steps_vs_batch": "Fig. 3a: steps to target vs batch size, SGD and tuned momentum, powers p",
    "schedule_steps": "Fig. 3b: steps vs batch size, optimized 10-piece lr schedules vs constant lr",
    "schedules": "Fig. 3c: optimized 50-piece lr schedules (lr vs step), B = 2^4 .. 2^12",
    "final_lr": "Fig. 13: final rate of the optimized 50-piece schedule vs batch size (linear in B)",
    "ema": "EMA: steps vs batch size, SGD + EMA of the iterates (lr, gamma tuned) vs SGD",
    "momentum_vs_sgd": "Fig. 9: noise-free risk (eqn. 6, first term), momentum vs SGD at lr/(1-m)",
    "targets": "Fig. 11: steps to target vs batch size for targets 0.1 .. 0.001",
    "optimal_lr": "Fig. 12: optimal (effective) lr vs batch size: SGD, momentum 0.9, tuned",
    "flat_directions": "Myrtle: heat maps over (lr, B), (lr, 1-m): flat directions lr/B, lr/(1-m)",
    "rescaling": "Jastrzebski: lr -> c lr, B -> c B keeps the dynamics until c lr nears 2/h_max",
    "temperature": "Park: steady-state risk vs temperature g = lr/(2 B (1-m)), many (lr, B, m)",
    "walk": "Xing: loss on the segment between iterates, valley floor, consecutive-gradient cosine",
}

__all__ = ["FIGURES"]
