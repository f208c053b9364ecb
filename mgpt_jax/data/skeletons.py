"""The two skeletons of the benchmarks and their feature layouts.

Joint trees, unit raw offsets, face/foot joint indices and thresholds follow the
HumanML3D processing scripts. Bone lengths define the "uniform skeleton" every
clip is retargeted to:
- HumanML3D: read off the released `new_joints` clips (all clips agree to ~1e-6;
  they are the lengths of the reference sample 000021). Unit offsets alone are wrong.
- KIT-ML: no joints clip is available here; the lengths below are estimated
  from the mean pose of KIT's released statistics (KIT's millimetre-like units).
  To process real KIT joints exactly, pass lengths read off one of its
  `new_joints` clips (`Skeleton.with_bone_lengths_from`).
"""
from __future__ import annotations

import dataclasses
import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
  """Where each block lives in the 4 + 3(J-1) + 6(J-1) + 3J + 4 feature vector."""
  num_joints: int

  @property
  def dim(self) -> int:
    return 4 + 12 * self.num_joints - 5

  @property
  def root_rot_vel(self) -> slice:
    return slice(0, 1)

  @property
  def root_lin_vel(self) -> slice:
    return slice(1, 3)

  @property
  def root_y(self) -> slice:
    return slice(3, 4)

  @property
  def ric(self) -> slice:
    return slice(4, 4 + 3 * (self.num_joints - 1))

  @property
  def rot6d(self) -> slice:
    start = self.ric.stop
    return slice(start, start + 6 * (self.num_joints - 1))

  @property
  def local_vel(self) -> slice:
    start = self.rot6d.stop
    return slice(start, start + 3 * self.num_joints)

  @property
  def contacts(self) -> slice:
    return slice(self.local_vel.stop, self.local_vel.stop + 4)


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """A joint tree with everything the feature procedure needs."""
  name: str
  chains: tuple[tuple[int, ...], ...]
  raw_offsets: tuple[tuple[float, float, float], ...]
  bone_lengths: tuple[float, ...]  # per joint, length of the bone to its parent; 0 for the root
  face_joints: tuple[int, int, int, int]  # right hip, left hip, right shoulder, left shoulder
  left_foot: tuple[int, int]
  right_foot: tuple[int, int]
  lower_legs: tuple[int, int]  # joints whose bones give the leg length used for retarget scaling
  contact_threshold: float  # squared per-frame foot displacement below which a foot is in contact
  fps: float
  min_motion_len: int
  max_motion_len: int = 196  # clips are kept when min_motion_len <= T < 200 (official loaders)

  @property
  def num_joints(self) -> int:
    return len(self.raw_offsets)

  @property
  def layout(self) -> FeatureLayout:
    return FeatureLayout(self.num_joints)

  @property
  def feature_dim(self) -> int:
    return self.layout.dim

  @property
  def parents(self) -> np.ndarray:
    parents = np.full(self.num_joints, -1)
    for chain in self.chains:
      for parent, child in zip(chain[:-1], chain[1:]):
        parents[child] = parent
    return parents

  @property
  def offsets(self) -> np.ndarray:
    """Rest offsets (J, 3) of the uniform skeleton: unit direction times length."""
    return np.asarray(self.raw_offsets, np.float64) * np.asarray(self.bone_lengths)[:, None]

  def bone_lengths_of(self, joints: np.ndarray) -> np.ndarray:
    """Per-joint bone lengths (..., J) of joint positions (..., J, 3)."""
    joints = np.asarray(joints, np.float64)
    parents = self.parents
    lengths = np.linalg.norm(joints[..., 1:, :] - joints[..., parents[1:], :], axis=-1)
    return np.concatenate([np.zeros(lengths.shape[:-1] + (1,)), lengths], axis=-1)

  def with_bone_lengths_from(self, joints: np.ndarray) -> "Skeleton":
    """This skeleton retargeting to the bone lengths of frame 0 of `joints`."""
    lengths = self.bone_lengths_of(np.asarray(joints)[0])
    return dataclasses.replace(self, bone_lengths=tuple(float(x) for x in lengths))


HUMANML3D = Skeleton(
    name="humanml3d",
    chains=((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15),
            (9, 14, 17, 19, 21), (9, 13, 16, 18, 20)),
    raw_offsets=((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0),
                 (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1),
                 (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, -1, 0), (0, -1, 0),
                 (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0)),
    bone_lengths=(0.0, 0.103074, 0.109883, 0.131568, 0.393623, 0.390188, 0.14319,
                  0.432433, 0.425643, 0.057365, 0.143382, 0.149419, 0.21936, 0.137487,
                  0.143383, 0.103039, 0.131614, 0.122984, 0.25684, 0.263092, 0.266012,
                  0.269876),
    face_joints=(2, 1, 17, 16),
    left_foot=(7, 10),
    right_foot=(8, 11),
    lower_legs=(5, 8),
    contact_threshold=0.002,
    fps=20.0,
    min_motion_len=40,
)

KIT = Skeleton(
    name="kit",
    chains=((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4),
            (3, 5, 6, 7), (3, 8, 9, 10)),
    raw_offsets=((0, 0, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1, 0, 0),
                 (0, -1, 0), (0, -1, 0), (-1, 0, 0), (0, -1, 0), (0, -1, 0), (1, 0, 0),
                 (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1), (-1, 0, 0), (0, -1, 0),
                 (0, -1, 0), (0, 0, 1), (0, 0, 1)),
    bone_lengths=(0.0, 76.6, 107.4, 39.7, 26.5, 97.3, 137.1, 91.1, 97.3, 137.1, 91.1,
                  44.9, 223.1, 225.7, 25.5, 45.7, 44.9, 223.1, 225.7, 25.5, 45.7),
    face_joints=(11, 16, 5, 8),
    left_foot=(19, 20),
    right_foot=(14, 15),
    lower_legs=(17, 18),
    contact_threshold=0.05,
    fps=12.5,
    min_motion_len=24,
)

_ALIASES = {"humanml3d": HUMANML3D, "hml3d": HUMANML3D, "t2m": HUMANML3D,
            "kit": KIT, "kit_ml": KIT, "kit-ml": KIT, "kitml": KIT}

DATASET_NAMES = ("humanml3d", "kit")


def get_skeleton(name: str) -> Skeleton:
  try:
    return _ALIASES[name.lower()]
  except KeyError:
    raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(_ALIASES)}") from None


def skeleton_for_dim(dim: int) -> Skeleton:
  """The skeleton whose feature vector has `dim` entries (263 or 251)."""
  for skeleton in (HUMANML3D, KIT):
    if skeleton.feature_dim == dim:
      return skeleton
  raise ValueError(f"no skeleton has {dim}-d features: expected 263 (HumanML3D) or 251 (KIT-ML)")


def skeleton_for_joints(num_joints: int) -> Skeleton:
  for skeleton in (HUMANML3D, KIT):
    if skeleton.num_joints == num_joints:
      return skeleton
  raise ValueError(f"no skeleton has {num_joints} joints: expected 22 (HumanML3D) or 21 (KIT-ML)")

