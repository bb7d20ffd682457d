import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    """Two cores are shared: keep torch to one thread and Lightning's banners quiet."""
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    yield
