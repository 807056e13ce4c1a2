"""nnbench: real-network steps-to-target sweeps over batch sizes and optimizers (PyTorch)."""

__all__: list[str] = []
