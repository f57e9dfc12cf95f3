"""Folio: distributed batch OCR for scanned documents.

The library is runner-agnostic: stages are callable classes that run in a plain
loop (``pipeline.runner.local``) or in Ray actors (``pipeline.runner.ray_data``).
"""

import os

__version__ = "0.1.0"

# torch's OpenMP threads spin while they wait for work; on a machine whose cores are
# shared (2-core CI, Ray actors with fractional CPUs) that makes inference many times
# slower. Passive waiting is as fast on idle cores. Set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
