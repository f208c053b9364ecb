"""Random crops of motions, as the reference loaders take them."""
from __future__ import annotations

import numpy as np

UNIT_LEN = 4  # the VQ-VAE's temporal downsampling: crops are whole tokens


def crop_length(num_frames: int, rng: np.random.Generator, unit: int = UNIT_LEN) -> int:
  """floor(T/unit)*unit with prob. 2/3, one unit less with prob. 1/3 (never below one unit)."""
  units = num_frames // unit
  if units > 1 and rng.integers(3) == 2:
    units -= 1
  return units * unit


def random_crop(motion: np.ndarray, rng: np.random.Generator, unit: int = UNIT_LEN) -> np.ndarray:
  """A crop of `crop_length` frames at a random offset."""
  length = crop_length(len(motion), rng, unit)
  start = int(rng.integers(len(motion) - length + 1))
  return motion[start:start + length]


def random_window(motion: np.ndarray, rng: np.random.Generator, size: int = 64) -> np.ndarray:
  """A window of exactly `size` frames (the tokenizer's training input)."""
  if len(motion) < size:
    raise ValueError(f"motion of {len(motion)} frames is shorter than the window of {size}")
  start = int(rng.integers(len(motion) - size + 1))
  return motion[start:start + size]
