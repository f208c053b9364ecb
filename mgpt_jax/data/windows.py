"""Stage-1 input: random fixed-size windows of normalised motion, a pure function of (seed, step).

Every host computes the same global batch indices and keeps its own rows, so
the input order is deterministic per seed, identical for any host count, and a
restarted run resumes exactly where it stopped.
"""
from __future__ import annotations

import os

import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data import formats, skeletons
from mgpt_jax.data.stats import Normalizer


class WindowBatches:

  def __init__(self, data_dir: str, batch_size: int, window: int = 64, split: str = "train",
               dataset: str = "humanml3d", stats_kind: str = "dataset",
               stats_dir: str | None = None, seed: int = 0):
    self.data = formats.MotionDataset(data_dir, dataset)
    self.normalizer = Normalizer.from_dir(stats_dir or data_dir, stats_kind,
                                          self.data.skeleton.feature_dim)
    self.stats_kind = stats_kind
    self.batch_size, self.window, self.seed = batch_size, window, seed
    clips, self.skipped = self.data.clips(split)
    self.motions = [self.normalizer.normalize(m).astype(np.float32) for _, m in clips
                    if len(m) >= window]
    if not self.motions:
      raise formats.MotionDataError(data_dir, f"no {split} clip of at least {window} frames")
    self.lengths = np.array([len(m) for m in self.motions])

  @staticmethod
  def batch_shapes(batch_size: int, window: int = 64,
                   dataset: str = "humanml3d") -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each feature of a global batch, from the settings alone (no data)."""
    dim = skeletons.get_skeleton(dataset).feature_dim
    return {"motion": ((batch_size, window, dim), np.dtype(np.float32))}

  @property
  def feature_dim(self) -> int:
    return self.data.skeleton.feature_dim

  def batch(self, step: int, process_index: int = 0,
            process_count: int = 1) -> dict[str, np.ndarray]:
    """This process's rows of the global batch of `step`."""
    if self.batch_size % process_count:
      raise ValueError(f"global batch {self.batch_size} is not divisible by {process_count} "
                       "processes")
    rng = np.random.default_rng([self.seed, step])
    clips = rng.integers(len(self.motions), size=self.batch_size)
    starts = (rng.random(self.batch_size) * (self.lengths[clips] - self.window + 1)).astype(int)
    per_process = self.batch_size // process_count
    rows = range(process_index * per_process, (process_index + 1) * per_process)
    return {"motion": np.stack([self.motions[clips[i]][starts[i]:starts[i] + self.window]
                                for i in rows])}

  def save_assets(self, directory: str) -> None:
    """The stats the model was trained with (as Mean/Std.npy, whatever their kind), so
    tokens can be made the same way later."""
    self.normalizer.save(directory, "dataset")
    atomic_io.write_text(os.path.join(directory, "data.txt"),
                         f"dataset={self.data.skeleton.name}\nstats_kind={self.stats_kind}\n"
                         f"data_dir={os.path.abspath(self.data.root)}\n")
