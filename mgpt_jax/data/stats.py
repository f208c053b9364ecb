"""Feature normalisation: the dataset's Mean/Std, or the evaluator "meta" stats.

Two stats pairs are in use for the same features:
- the dataset's `Mean.npy` / `Std.npy` (what HumanML3D and KIT-ML ship);
- the "meta" `mean.npy` / `std.npy` that T2M-GPT, MotionGPT and the T2M
  evaluators normalise with. Their std divides the root and foot-contact groups
  by 25 ("feat_bias"), which weights those 8 dims 25x more in normalised space.
Both are group-wise: the std is constant inside each feature block.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data.formats import MotionDataError, load_npy
from mgpt_jax.data.skeletons import FeatureLayout

# File names of each stats pair, as the releases name them.
STATS_FILES = {
    "dataset": ("Mean.npy", "Std.npy"),
    "meta": ("mean.npy", "std.npy"),
    "eval": ("mean_eval.npy", "std_eval.npy"),
}
META_FEAT_BIAS = 25.0


@dataclasses.dataclass(frozen=True)
class Normalizer:
  mean: np.ndarray
  std: np.ndarray

  def normalize(self, features):
    return (features - self.mean) / self.std

  def denormalize(self, features):
    return features * self.std + self.mean

  @property
  def dim(self) -> int:
    return int(self.mean.shape[-1])

  @classmethod
  def from_files(cls, mean_path, std_path, dim: int | None = None) -> "Normalizer":
    mean, std = load_npy(mean_path), load_npy(std_path)
    for path, array in ((mean_path, mean), (std_path, std)):
      if array.ndim != 1 or (dim is not None and array.shape[0] != dim):
        raise MotionDataError(path, f"expected stats of shape ({dim or 'D'},), got {array.shape}")
      if not np.isfinite(array).all():
        raise MotionDataError(path, "stats contain NaN or Inf")
    if mean.shape != std.shape:
      raise MotionDataError(std_path, f"shape {std.shape} does not match mean {mean.shape}")
    if (std <= 0).any():
      raise MotionDataError(std_path, f"std must be > 0, dim {int(np.argmax(std <= 0))} is not")
    return cls(mean.astype(np.float32), std.astype(np.float32))

  @classmethod
  def from_dir(cls, directory, kind: str = "dataset", dim: int | None = None) -> "Normalizer":
    """Loads a stats pair by kind: 'dataset' (Mean/Std.npy), 'meta' or 'eval' (also looked
    for in directory/meta/)."""
    if kind not in STATS_FILES:
      raise ValueError(f"unknown stats kind {kind!r}: expected one of {sorted(STATS_FILES)}")
    mean_name, std_name = STATS_FILES[kind]
    if kind != "dataset" and not os.path.exists(os.path.join(directory, mean_name)):
      # MotionGPT's assets and our synthetic sets keep these in a meta/ folder.
      directory = os.path.join(directory, "meta")
    return cls.from_files(os.path.join(directory, mean_name), os.path.join(directory, std_name), dim)

  def save(self, directory, kind: str = "dataset") -> None:
    mean_name, std_name = STATS_FILES[kind]
    atomic_io.save_npy(os.path.join(directory, mean_name), self.mean)
    atomic_io.save_npy(os.path.join(directory, std_name), self.std)


def renormalize(features, source: Normalizer, target: Normalizer):
  """Features normalised with `source` re-expressed in `target`'s normalisation."""
  return target.normalize(source.denormalize(features))


def compute_stats(motions, num_joints: int, feat_bias: float = 1.0) -> Normalizer:
  """Group-wise stats as the HumanML3D recipe computes them.

  The mean is per dimension; the std is the mean std of each feature block,
  with the root and foot-contact blocks divided by `feat_bias` (1 for the
  dataset's Std.npy, 25 for the meta stats).
  """
  frames = np.concatenate([np.asarray(m, np.float64) for m in motions], axis=0)
  layout = FeatureLayout(num_joints)
  if frames.shape[1] != layout.dim:
    raise ValueError(f"motions have {frames.shape[1]}-d features, expected {layout.dim}")
  mean, std = frames.mean(0), frames.std(0)
  for block, bias in ((layout.root_rot_vel, feat_bias), (layout.root_lin_vel, feat_bias),
                      (layout.root_y, feat_bias), (layout.ric, 1.0), (layout.rot6d, 1.0),
                      (layout.local_vel, 1.0), (layout.contacts, feat_bias)):
    std[block] = std[block].mean() / bias
  # A constant block (e.g. feet never in contact) must not divide by zero.
  std = np.where(std > 1e-8, std, 1.0)
  return Normalizer(mean.astype(np.float32), std.astype(np.float32))
