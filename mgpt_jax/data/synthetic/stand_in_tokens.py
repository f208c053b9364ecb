"""Random stand-in stage-1 tokens, for exercising stages 2-3 without training a tokenizer.

The input pipeline, the trainers and the benchmarks need only the tokens' shapes: one
TOKENS/<entry>.npy of shape (1, length // frames_per_token) per entry of every split.
"""
from __future__ import annotations

import os

import numpy as np

from mgpt_jax.data import formats


def write_stand_in_tokens(root: str, num_codes: int = 128, seed: int = 0,
                          dataset: str = "humanml3d", frames_per_token: int = 4
                          ) -> dict[str, dict[str, np.ndarray]]:
  """Writes random codes < num_codes for every entry; returns {split: {entry name: codes}}."""
  entries = formats.MotionDataset(root, dataset)
  out_dir = os.path.join(root, formats.TOKENS_DIR)
  os.makedirs(out_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  written = {}
  for split in formats.SPLITS:
    written[split] = {}
    for entry in entries.entries(split).entries:
      codes = rng.integers(0, num_codes, (1, entry.length // frames_per_token)).astype(np.int32)
      np.save(os.path.join(out_dir, entry.name + ".npy"), codes)
      written[split][entry.name] = codes[0]
  return written
