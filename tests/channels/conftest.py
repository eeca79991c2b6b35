"""Fixtures shared by the channel tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine OpenMP spin-waiting makes LDPC decoding ~5x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
