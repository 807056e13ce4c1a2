"""An instrument that fails some trials, the same ones wherever they run (for failure-path tests)."""


def fails_when_first_weight_positive(model, loss_fn, batch):
    """Raises for a trial whose model starts with a positive first weight (a function of the trial's
    seed only: about half the trials), else records that weight."""
    first = next(model.parameters()).detach().flatten()[0]
    if first > 0:
        raise RuntimeError(f"instrument refused a positive first weight ({float(first):.4f})")
    return {"first_weight": float(first)}

