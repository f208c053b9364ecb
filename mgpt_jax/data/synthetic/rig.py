"""A posable rig over the benchmark skeletons: joint names, a rest pose and forward kinematics.

Coordinates: y up, the body faces +Z at rest and the person's left is +X, so
a positive yaw (about +Y) turns the facing from +Z towards +X, i.e. to the left
(counter-clockwise seen from above).

The rest pose is our own and anatomical (legs straight down, arms hanging, feet
forward, shoulders lateral); `Skeleton.raw_offsets` only matter to the feature
IK, which measures whatever pose it is given against them. Bone lengths are the
skeleton's, so the feature procedure's retargeting leaves our joints unchanged.

Convention: a joint's local rotation turns the bones to its children (and
everything below), e.g. the l_hip rotation swings the thigh. The reference FK
uses the other convention; it does not matter here because we only hand joint
positions to it.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mgpt_jax.data import quaternion as quat
from mgpt_jax.data.skeletons import HUMANML3D, KIT, Skeleton

# index -> (name, rest direction of the bone from its parent); left is +X.
_HUMANML3D_REST = {
    0: ("pelvis", (0, 0, 0)),
    1: ("l_hip", (0.55, -0.83, -0.05)),
    2: ("r_hip", (-0.55, -0.83, -0.05)),
    3: ("spine1", (0, 1, -0.15)),
    4: ("l_knee", (0.03, -1, 0.01)),
    5: ("r_knee", (-0.03, -1, 0.01)),
    6: ("spine2", (0, 1, 0.05)),
    7: ("l_ankle", (-0.01, -1, -0.04)),
    8: ("r_ankle", (0.01, -1, -0.04)),
    9: ("spine3", (0, 1, 0)),
    10: ("l_toe", (0.05, -0.45, 1)),
    11: ("r_toe", (-0.05, -0.45, 1)),
    12: ("neck", (0, 1, -0.1)),
    13: ("l_collar", (0.6, 0.8, -0.05)),
    14: ("r_collar", (-0.6, 0.8, -0.05)),
    15: ("head", (0, 1, 0.25)),
    16: ("l_shoulder", (1, -0.1, -0.05)),
    17: ("r_shoulder", (-1, -0.1, -0.05)),
    18: ("l_elbow", (0.12, -1, -0.02)),
    19: ("r_elbow", (-0.12, -1, -0.02)),
    20: ("l_wrist", (0.05, -1, 0.08)),
    21: ("r_wrist", (-0.05, -1, 0.08)),
}

_KIT_REST = {
    0: ("pelvis", (0, 0, 0)),
    1: ("spine1", (0, 1, -0.05)),
    2: ("spine2", (0, 1, 0.05)),
    3: ("neck", (0, 1, 0)),
    4: ("head", (0, 1, 0.2)),
    5: ("r_shoulder", (-1, -0.1, 0)),
    6: ("r_elbow", (-0.12, -1, -0.02)),
    7: ("r_wrist", (-0.05, -1, 0.08)),
    8: ("l_shoulder", (1, -0.1, 0)),
    9: ("l_elbow", (0.12, -1, -0.02)),
    10: ("l_wrist", (0.05, -1, 0.08)),
    11: ("r_hip", (-1, -0.35, 0)),
    12: ("r_knee", (-0.03, -1, 0.01)),
    13: ("r_ankle", (0.01, -1, -0.04)),
    14: ("r_ball", (0, -0.6, 1)),
    15: ("r_toe", (0, -0.15, 1)),
    16: ("l_hip", (1, -0.35, 0)),
    17: ("l_knee", (0.03, -1, 0.01)),
    18: ("l_ankle", (-0.01, -1, -0.04)),
    19: ("l_ball", (0, -0.6, 1)),
    20: ("l_toe", (0, -0.15, 1)),
}

# Joints whose rotation bends the torso (the last one also carries the arms);
# KIT has no separate neck, its joint 3 carries head and both shoulders.
_SPINES = {"humanml3d": (3, 6, 9), "kit": (1, 2, 3)}


@dataclasses.dataclass(frozen=True, eq=False)
class Rig:
  skeleton: Skeleton
  names: tuple[str, ...]
  rest_offsets: np.ndarray  # (J, 3) bone vectors from the parent, world units
  spine: tuple[int, ...]

  @property
  def num_joints(self) -> int:
    return len(self.names)

  @functools.cached_property
  def index(self) -> dict[str, int]:
    return {name: i for i, name in enumerate(self.names)}

  def __getitem__(self, name: str) -> int:
    return self.index[name]

  def get(self, name: str) -> int | None:
    return self.index.get(name)

  def side(self, side: str, part: str) -> int:
    """Index of e.g. side("left", "wrist") -> l_wrist."""
    return self.index[f"{side[0]}_{part}"]

  @functools.cached_property
  def parents(self) -> np.ndarray:
    return self.skeleton.parents

  @functools.cached_property
  def order(self) -> tuple[int, ...]:
    """Joints with every parent before its children."""
    depth = np.zeros(self.num_joints, int)
    for j in range(self.num_joints):
      p = self.parents[j]
      while p >= 0:
        depth[j] += 1
        p = self.parents[p]
    return tuple(int(j) for j in np.argsort(depth, kind="stable"))

  @functools.cached_property
  def mirror(self) -> np.ndarray:
    """Permutation that swaps every left joint with its right counterpart."""
    swap = {"l_": "r_", "r_": "l_"}
    return np.array([self.index[swap.get(n[:2], n[:2]) + n[2:]] for n in self.names])

  @functools.cached_property
  def leg_length(self) -> float:
    """Thigh + shin: the unit every action's translations are measured in."""
    return float(sum(self.skeleton.bone_lengths[j] for j in self.skeleton.lower_legs))

  @functools.cached_property
  def feet(self) -> tuple[int, ...]:
    """Ankle and the joints below it on both sides: what touches the floor."""
    return tuple(i for i, n in enumerate(self.names)
                 if n[2:] in ("ankle", "ball", "toe") and n[:2] in ("l_", "r_"))

  @functools.cached_property
  def legs(self) -> tuple[int, ...]:
    return tuple(i for i, n in enumerate(self.names)
                 if n[2:] in ("hip", "knee", "ankle", "ball", "toe") and n[:2] in ("l_", "r_"))

  def fk(self, local_aa: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Joint positions (T, J, 3) relative to the root, from local axis-angles (T, J, 3).

    The root's world rotation is yaw (T,) about +Y times its local rotation.
    """
    local = quat.axis_angle_to_quat(local_aa)
    world = np.empty_like(local)
    pos = np.zeros(local_aa.shape)
    world[:, 0] = quat.qmul(quat.yaw_quat(yaw), local[:, 0])
    for j in self.order[1:]:
      p = self.parents[j]
      pos[:, j] = pos[:, p] + quat.qrot(world[:, p], self.rest_offsets[j])
      world[:, j] = quat.qmul(world[:, p], local[:, j])
    return pos


def _build(skeleton: Skeleton, rest: dict) -> Rig:
  names = tuple(rest[j][0] for j in range(skeleton.num_joints))
  directions = np.array([rest[j][1] for j in range(skeleton.num_joints)], np.float64)
  norms = np.linalg.norm(directions, axis=-1, keepdims=True)
  directions = np.divide(directions, norms, out=np.zeros_like(directions), where=norms > 0)
  offsets = directions * np.asarray(skeleton.bone_lengths)[:, None]
  return Rig(skeleton, names, offsets, _SPINES[skeleton.name])


_RIGS = {"humanml3d": _build(HUMANML3D, _HUMANML3D_REST), "kit": _build(KIT, _KIT_REST)}


def rig_for(skeleton: Skeleton) -> Rig:
  """The rig of a benchmark skeleton, with that skeleton's bone lengths."""
  base = _RIGS[skeleton.name]
  if base.skeleton is skeleton:
    return base
  # Same tree, other bone lengths (e.g. Skeleton.with_bone_lengths_from): keep the directions.
  directions = base.rest_offsets / np.maximum(
      np.linalg.norm(base.rest_offsets, axis=-1, keepdims=True), 1e-12)
  return Rig(skeleton, base.names, directions * np.asarray(skeleton.bone_lengths)[:, None],
             base.spine)
