"""The embedded default dataset: the synthetic set, generated once per (size, seed) into a cache.

The cache lives in $MGPT_CACHE_DIR (default ~/.cache/mgpt_jax). A dataset is
written to a temporary directory and renamed into place, so concurrent
processes (or hosts sharing a file system) never see a half-written one.
"""
from __future__ import annotations

import os
import shutil
import tempfile


def cache_root() -> str:
  return os.environ.get("MGPT_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache",
                                                       "mgpt_jax"))


def cached_dataset(num_motions: int = 2000, seed: int = 0, dataset: str = "humanml3d",
                   cache_dir: str | None = None) -> str:
  """The directory of the synthetic dataset with these settings, generating it if needed."""
  from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=g-import-not-at-top
  root = cache_dir or cache_root()
  path = os.path.join(root, f"synthetic_{dataset}_n{num_motions}_s{seed}")
  if os.path.isdir(path):
    return path
  os.makedirs(root, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=root)
  try:
    write_dataset(tmp, num_motions, seed, dataset=dataset)
    try:
      os.rename(tmp, path)
    except OSError:
      if not os.path.isdir(path):  # another process finishing first is fine
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path
