import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread, and are then immune to other processes on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
