"""Test session settings: the CPU thread count CI machines have."""

import torch

torch.set_num_threads(2)
