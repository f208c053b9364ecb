"""One run per run directory: an exclusive lock on MODEL_DIR/.lock while a run uses it.

flock is released by the kernel when the process ends, however it ends (SIGKILL included),
so a killed run never leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator

import jax

from mgpt_jax.errors import UserError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def locked(model_dir: str) -> Iterator[None]:
  """Holds the run directory's lock (on process 0: other hosts share its file system)."""
  if jax.process_index() != 0:
    yield
    return
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
      raise UserError(f"{model_dir}: in use by another run (process {holder}); wait for it to "
                      "end or choose another model_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock
