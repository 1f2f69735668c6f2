"""Shared test settings."""

import torch

# The tests train tiny models: one thread avoids OpenMP spin-waiting on a busy 2-core CI box.
torch.set_num_threads(1)
