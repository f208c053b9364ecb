"""Multi-host start-up: jax.distributed from flags or the environment.

Give every process the coordinator's host:port, the number of processes and its
own index, either as T5X's flags (--coordinator_address, --process_count,
--process_index; see mgpt_jax/train.py) or as MGPT_COORDINATOR,
MGPT_NUM_PROCESSES and MGPT_PROCESS_ID. Flags win over the environment.

On TPU pods and SLURM/Open MPI clusters JAX finds its peers by itself: set
MGPT_DISTRIBUTED=auto (or T5X's --multiprocess_gpu) and leave out whatever the
cluster provides.

On CPU, processes exchange data through gloo, jax's default
`jax_cpu_collectives_implementation`; nothing needs setting.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import jax

# (flag, environment variable) of each setting, for error messages.
NAMES = {"coordinator": ("--coordinator_address", "MGPT_COORDINATOR"),
         "num_processes": ("--process_count", "MGPT_NUM_PROCESSES"),
         "process_id": ("--process_index", "MGPT_PROCESS_ID")}


@dataclasses.dataclass(frozen=True)
class Settings:
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto: bool = False  # let jax detect the settings left out from the cluster


def _named(key: str) -> str:
  flag, env = NAMES[key]
  return f"{flag} (or {env})"


def _int_from_env(environ: Mapping[str, str], key: str) -> int | None:
  env = NAMES[key][1]
  value = environ.get(env, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{env}={value!r} is not an integer") from None


def resolve(coordinator: str | None = None, num_processes: int | None = None,
            process_id: int | None = None, auto: bool | None = None,
            environ: Mapping[str, str] | None = None) -> Settings | None:
  """The settings from arguments (flags) then `environ`; None for a one-process run.

  `auto` (--multiprocess_gpu) starts jax.distributed even with settings left out;
  None takes it from MGPT_DISTRIBUTED.

  Raises ValueError, naming the flag and variable, for incomplete or
  inconsistent settings, so that a misconfigured process fails at once instead
  of waiting for peers that never come.
  """
  environ = os.environ if environ is None else environ
  coordinator = coordinator or environ.get("MGPT_COORDINATOR", "").strip() or None
  if num_processes is None:
    num_processes = _int_from_env(environ, "num_processes")
  if process_id is None:
    process_id = _int_from_env(environ, "process_id")
  mode = environ.get("MGPT_DISTRIBUTED", "").strip()
  if mode not in ("", "auto"):
    raise ValueError(f"MGPT_DISTRIBUTED={mode!r}: expected 'auto' or unset")
  if auto is None:
    auto = mode == "auto"

  if not auto:
    if coordinator is None:
      given = [key for key, value in (("num_processes", num_processes),
                                      ("process_id", process_id)) if value is not None]
      if given:
        raise ValueError(f"{_named(given[0])} is set but {_named('coordinator')} is not; "
                         "set it to the host:port of process 0 (or set MGPT_DISTRIBUTED=auto "
                         "on a cluster jax detects)")
      return None
    for key, value in (("num_processes", num_processes), ("process_id", process_id)):
      if value is None:
        raise ValueError(f"{_named('coordinator')} is set but {_named(key)} is not")
  if coordinator is not None:
    host, colon, port = coordinator.rpartition(":")
    if not (host and colon and port.isdigit()):
      raise ValueError(f"{_named('coordinator')}={coordinator!r}: expected host:port")
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"{_named('num_processes')}={num_processes}: expected at least 1")
  if process_id is not None and (process_id < 0 or
                                 (num_processes is not None and process_id >= num_processes)):
    raise ValueError(f"{_named('process_id')}={process_id}: expected 0 <= index < "
                     f"{num_processes if num_processes is not None else 'process count'}")
  return Settings(coordinator, num_processes, process_id, auto)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool | None = None) -> bool:
  """Starts jax.distributed if this is a multi-process run; returns whether it is one.

  Must run before anything touches a jax device. Calling it again (e.g. a
  second run in the same process) leaves the running client alone.
  """
  settings = resolve(coordinator, num_processes, process_id, auto)
  if settings is None:
    return False
  if not jax.distributed.is_initialized():
    jax.distributed.initialize(coordinator_address=settings.coordinator,
                               num_processes=settings.num_processes,
                               process_id=settings.process_id)
  return True
