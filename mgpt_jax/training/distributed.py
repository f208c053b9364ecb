"""Multi-host start-up: jax.distributed from arguments or the environment.

On TPU pods and SLURM/Open MPI clusters JAX finds its peers by itself
(MGPT_DISTRIBUTED=auto); elsewhere set MGPT_COORDINATOR (host:port),
MGPT_NUM_PROCESSES and MGPT_PROCESS_ID on every process.
"""
from __future__ import annotations

import os

import jax


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts jax.distributed if this is a multi-process run; returns whether it did."""
  coordinator = coordinator or os.environ.get("MGPT_COORDINATOR")
  if coordinator is None and os.environ.get("MGPT_DISTRIBUTED") != "auto":
    return False
  if num_processes is None and "MGPT_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["MGPT_NUM_PROCESSES"])
  if process_id is None and "MGPT_PROCESS_ID" in os.environ:
    process_id = int(os.environ["MGPT_PROCESS_ID"])
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)
  return True
