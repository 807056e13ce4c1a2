"""Shared test settings for nnbench.

Tests use tiny tensors, for which intra-op threading costs far more than it gains (a small convolution
took 22 ms with 2 threads vs 0.05 ms with 1 on the 2-core CI machine), so the suite runs single-threaded;
a test that changes the thread count (a workload's ``cpu_threads``) gets it restored afterwards.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)
