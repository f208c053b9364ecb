"""Accelerators the planner estimates for: dense bf16 peak, memory and bandwidth per chip.

Vendor datasheet numbers (dense, no sparsity). One JAX device per chip: a TPU v4/v5p chip is
one megacore device, a GPU one device. Hardware gin files name theirs with the ACCELERATOR
macro (e.g. ACCELERATOR = 'a100-40gb') so that `mgpt plan` knows what to fit.
"""
from __future__ import annotations

import dataclasses

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Accelerator:
  name: str
  peak_bf16_flops: float  # per chip, dense
  memory_bytes: int  # HBM per chip
  hbm_bytes_per_second: float

  def usable_bytes(self, fraction: float) -> int:
    return int(self.memory_bytes * fraction)


ACCELERATORS = {a.name: a for a in (
    Accelerator("a100-40gb", 312e12, 40 * GIB, 1.555e12),
    Accelerator("a100-80gb", 312e12, 80 * GIB, 2.039e12),
    Accelerator("h100-80gb", 989e12, 80 * GIB, 3.35e12),  # SXM
    Accelerator("h200", 989e12, 141 * 10**9, 4.8e12),
    Accelerator("tpu-v4", 275e12, 32 * GIB, 1.2e12),
    Accelerator("tpu-v5e", 197e12, 16 * GIB, 0.819e12),
    Accelerator("tpu-v5p", 459e12, 95 * GIB, 2.765e12),
)}


def get(name: str) -> Accelerator:
  try:
    return ACCELERATORS[name.lower()]
  except KeyError:
    raise ValueError(f"unknown accelerator {name!r}: expected one of "
                     f"{', '.join(ACCELERATORS)}") from None
