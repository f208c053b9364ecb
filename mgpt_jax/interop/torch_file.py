"""PyTorch checkpoint files: read without running pickled code, write plain tensor dicts.

Reading uses torch.load(weights_only=True): tensors, containers and plain values only.
"""
from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np

from mgpt_jax import atomic_io


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError("reading and writing PyTorch checkpoints needs torch (pip install torch "
                      "--index-url https://download.pytorch.org/whl/cpu)") from None
  return torch


def load(path: str) -> dict:
  """The top-level dict of a torch.save file, tensors left as torch tensors."""
  torch = _torch()
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: checkpoint not found")
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
          ValueError, TypeError, AttributeError) as e:  # what a refused or corrupt file raises
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"{path}: cannot be read as a weights-only torch checkpoint ({first}); "
                     "if it holds other objects, keep only its tensors in a trusted "
                     "environment") from None
  if not isinstance(checkpoint, dict):
    raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
  return checkpoint


def to_numpy(state: dict, path: str, prefix: str = "") -> dict[str, np.ndarray]:
  """{key without prefix: float32 array} of the tensors of `state` whose keys start with prefix."""
  torch = _torch()
  out = {}
  for key, value in state.items():
    if not str(key).startswith(prefix):
      continue
    if not isinstance(value, torch.Tensor):
      raise ValueError(f"{path}: {key} is a {type(value).__name__}, expected a tensor")
    out[key[len(prefix):]] = value.detach().cpu().float().numpy()
  return out


def save(path: str, checkpoint: dict) -> None:
  """torch.save of a dict whose leaves are numpy arrays or plain values (atomically).

  Arrays that are the same numpy object become one shared tensor, as tied weights are.
  """
  torch = _torch()
  tensors: dict[int, object] = {}

  def convert(value):
    if isinstance(value, dict):
      return {k: convert(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
      if id(value) not in tensors:
        tensors[id(value)] = torch.from_numpy(np.ascontiguousarray(value))
      return tensors[id(value)]
    return value

  with atomic_io.atomic_path(path) as tmp:
    torch.save(convert(checkpoint), tmp)
