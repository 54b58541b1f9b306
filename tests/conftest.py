"""Shared test setup.

The Triton interpreter must be switched on before any kernel is defined, so it is set here, before
test modules import graphgpo.kernels. On a machine with CUDA the real kernels run instead.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tests use tiny tensors: one thread avoids thread-pool stalls on a shared 2-core machine.
torch.set_num_threads(1)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci")
except ImportError:  # hypothesis is a dev extra
    pass
