"""Model tests run torch single-threaded: on a shared 2-core machine, intra-op threads fighting other
processes made a tiny training step ~4x slower than one thread."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _torch_one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
