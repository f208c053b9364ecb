"""BVH export (and a small reader) for the 22-joint HumanML3D skeleton.

    bvh = write_bvh("clip.bvh", features)      # (T, 263) de-normalised features
    bvh = write_bvh("clip.bvh", joints)        # or (T, 22, 3) joint positions
    joints = bvh_to_joints(read_bvh("clip.bvh"), HUMANML3D_NAMES)   # FK, (T, 22, 3)

The hierarchy (joint names, parent order, channels) is that of momask's SMPL-like
template.bvh; lengths are metres, y up, as in HumanML3D.

What HumanML3D's "rot6d" dims are: its IK stores, at each child joint c, the
shortest-arc rotation turning the axis-aligned unit raw offset of c onto the
observed bone direction, made "local" by dividing out the rotations earlier in
its chain, where the arm chains restart from the root rotation, not from Spine2's.
Composed back (root yaw * locals) they give the world swing of every bone and
nothing more: no twist, and one rotation per bone rather than per BVH joint.
So we take each single-child joint's world rotation from the 6-D rotation of
its child bone; the two branching joints (Hips, Spine2) get the best rigid fit
(Kabsch) of their three child bones, whose rest directions are the clip's own
(the axis-aligned raw offsets put the hips 180 degrees apart; SMPL hips are
~68 degrees apart, and no single rotation could place all three children).
Joints input goes through the same path with swings computed from the positions.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from mgpt_jax.atomic_io import write_text
from mgpt_jax.data import quaternion as quat
from mgpt_jax.data.bvh_file import Bvh, bvh_to_joints, read_bvh  # pylint: disable=unused-import
from mgpt_jax.data.features import features_to_joints
from mgpt_jax.data.skeletons import HUMANML3D

# Template (Mixamo-style) names by HumanML3D / SMPL joint index.
HUMANML3D_NAMES = (
    "Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot",
    "RightFoot", "Spine2", "LeftToe", "RightToe", "Neck", "LeftShoulder", "RightShoulder",
    "Head", "LeftArm", "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand")
# Depth-first file order of the template: legs left then right, then the spine; at
# Spine2 the neck before the left and right shoulders.
FILE_ORDER = (0, 1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12, 15, 13, 16, 18, 20, 14, 17, 19, 21)
ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")
JOINT_CHANNELS = ("Zrotation", "Yrotation", "Xrotation")
_EULER = "ZYX"  # intrinsic, matching JOINT_CHANNELS: R = Rz @ Ry @ Rx


# --------------------------------------------------------------------------- rotations


def _kabsch(rest: np.ndarray, observed: np.ndarray) -> np.ndarray:
  """Rotations (T, 3, 3) best taking rest vectors (k, 3) onto observed (T, k, 3)."""
  u, _, vt = np.linalg.svd(np.einsum("ki,tkj->tij", rest, observed))
  flip = np.sign(np.linalg.det(np.einsum("tji,tkj->tik", vt, u)))  # avoid reflections
  d = np.stack([np.ones_like(flip), np.ones_like(flip), flip], axis=-1)
  return np.einsum("tji,tj,tkj->tik", vt, d, u)


def _swing_rotations(directions: np.ndarray) -> np.ndarray:
  """World rotations (T, J, 3, 3) of every bone: the shortest arc raw offset -> bone."""
  raw = np.asarray(HUMANML3D.raw_offsets, np.float64)
  world = np.tile(np.eye(3), directions.shape[:2] + (1, 1))
  world[:, 1:] = quat.quat_to_matrix(quat.qbetween(np.broadcast_to(raw[1:], directions[:, 1:].shape),
                                                   directions[:, 1:]))
  return world


def _rot6d_rotations(features: np.ndarray, joints: np.ndarray) -> np.ndarray:
  """World rotations (T, J, 3, 3) of every bone from the 6-D rotations, chained as HumanML3D's IK.

  The root yaw is fitted to the bones of `joints` (features_to_joints) instead of
  integrating the yaw velocities: the same on consistent features, but where the
  reference's yaw-velocity sign error (features.py) made the integrated facing
  wrong, the RIC joints and the 6-D rotations turn by opposite amounts.
  """
  skeleton = HUMANML3D
  local = quat.cont6d_to_matrix(features[:, skeleton.layout.rot6d].reshape(len(features), -1, 6))
  world = np.tile(np.eye(3), (len(features), skeleton.num_joints, 1, 1))
  for chain in skeleton.chains:
    rotation = world[:, 0]  # every chain restarts from the root rotation, arms included
    for child in chain[1:]:
      rotation = rotation @ local[:, child - 1]
      world[:, child] = rotation
  raw = np.asarray(skeleton.raw_offsets, np.float64) * np.asarray(skeleton.bone_lengths)[:, None]
  unturned = np.einsum("tjab,jb->tja", world, raw)
  bones = joints - joints[:, np.maximum(skeleton.parents, 0)]
  # The yaw psi maximising sum(bones . Ry(psi) unturned), in closed form.
  sin = (bones[..., 0] * unturned[..., 2] - bones[..., 2] * unturned[..., 0]).sum(-1)
  cos = (bones[..., 0] * unturned[..., 0] + bones[..., 2] * unturned[..., 2]).sum(-1)
  yaw = quat.quat_to_matrix(quat.yaw_quat(np.arctan2(sin, cos)))
  return np.einsum("tab,tjbc->tjac", yaw, world)


def _joint_rotations(bones: np.ndarray, world: np.ndarray, lengths: np.ndarray):
  """BVH offsets (J, 3) and world rotations (T, J, 3, 3) of the joints, SMPL order.

  bones: observed bone vectors (T, J, 3); world: per-bone world rotations; the
  rotation of a single-child joint is that of its child's bone.
  """
  raw = np.asarray(HUMANML3D.raw_offsets, np.float64)
  parents = HUMANML3D.parents
  offsets = raw * lengths[:, None]
  joint_world = np.tile(np.eye(3), world.shape[:2] + (1, 1))
  for joint in range(HUMANML3D.num_joints):
    children = np.flatnonzero(parents == joint)
    if len(children) == 1:
      joint_world[:, joint] = world[:, children[0]]
    elif len(children) > 1:
      # Rest directions: the clip's rigid child layout, turned to best match the raw offsets.
      fit = _kabsch(offsets[children], bones[:, children])
      rest = np.einsum("tji,tkj->tki", fit, bones[:, children]).mean(0)
      rest *= (lengths[children] / np.linalg.norm(rest, axis=-1))[:, None]
      offsets[children] = rest
      joint_world[:, joint] = _kabsch(rest, bones[:, children])
  for joint in range(1, HUMANML3D.num_joints):  # leaves (end effectors) keep their parent's
    if not np.any(parents == joint):
      joint_world[:, joint] = joint_world[:, parents[joint]]
  return offsets, joint_world


def _check_motion(motion) -> tuple[np.ndarray, str]:
  motion = np.asarray(motion, np.float64)
  if motion.ndim == 2 and motion.shape[-1] == HUMANML3D.feature_dim:
    kind = "features"
  elif motion.ndim == 3 and motion.shape[1:] == (HUMANML3D.num_joints, 3):
    kind = "joints"
  else:
    raise ValueError(f"motion of shape {motion.shape} given; BVH export expects HumanML3D "
                     f"features (T, {HUMANML3D.feature_dim}) or joints (T, {HUMANML3D.num_joints}, 3)")
  if len(motion) < 1:
    raise ValueError("motion has no frames")
  if not np.isfinite(motion).all():
    raise ValueError(f"{kind} contain NaN or Inf values")
  if kind == "features":
    norms = np.linalg.norm(motion[:, HUMANML3D.layout.rot6d].reshape(len(motion), -1, 3), axis=-1)
    if not 0.5 < np.median(norms) < 2.0:
      raise ValueError(f"features look normalised: the 6-D rotation columns have median norm "
                       f"{np.median(norms):.3g}, expected ~1; de-normalise (x * std + mean) first")
  return motion, kind


def motion_to_bvh(motion, fps: float | None = None) -> Bvh:
  """The Bvh (file order) of HumanML3D features (T, 263) or joints (T, 22, 3)."""
  motion, kind = _check_motion(motion)
  fps = HUMANML3D.fps if fps is None else float(fps)
  if not np.isfinite(fps) or fps <= 0:
    raise ValueError(f"fps must be a positive number, got {fps}")
  parents = HUMANML3D.parents
  joints = features_to_joints(motion) if kind == "features" else motion
  bones = joints - joints[:, np.maximum(parents, 0)]
  if kind == "features":  # features describe the uniform skeleton
    lengths = np.asarray(HUMANML3D.bone_lengths, np.float64)
    world = _rot6d_rotations(motion, joints)
    raw = np.asarray(HUMANML3D.raw_offsets, np.float64)
    bones = np.einsum("tjab,jb->tja", world, raw) * lengths[:, None]  # bone directions from 6-D
  else:
    lengths = np.linalg.norm(bones, axis=-1).mean(0)
    world = _swing_rotations(bones)
  offsets, joint_world = _joint_rotations(bones, world, lengths)

  parent_world = joint_world[:, np.maximum(parents, 0)]
  local = np.einsum("tjba,tjbc->tjac", parent_world, joint_world)
  local[:, 0] = joint_world[:, 0]
  with warnings.catch_warnings():  # at gimbal lock scipy still returns an exact decomposition
    warnings.simplefilter("ignore", UserWarning)
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler(_EULER, degrees=True)
  euler = euler.reshape(len(motion), -1, 3)[:, FILE_ORDER]
  frames = np.concatenate([joints[:, 0], euler.reshape(len(motion), -1)], axis=-1)

  index = {smpl: i for i, smpl in enumerate(FILE_ORDER)}
  file_offsets = offsets[list(FILE_ORDER)]
  file_offsets[0] = 0.0  # the root's place is all in its position channels
  return Bvh(names=tuple(HUMANML3D_NAMES[j] for j in FILE_ORDER),
             parents=np.array([index[parents[j]] if parents[j] >= 0 else -1 for j in FILE_ORDER]),
             offsets=file_offsets,
             channels=(ROOT_CHANNELS,) + (JOINT_CHANNELS,) * (len(FILE_ORDER) - 1),
             frames=frames, frame_time=1.0 / fps)


# --------------------------------------------------------------------------- text


def bvh_text(bvh: Bvh) -> str:
  lines = ["HIERARCHY"]

  def joint(j: int, depth: int) -> None:
    pad = "\t" * depth
    lines.append(f"{pad}{'ROOT' if bvh.parents[j] < 0 else 'JOINT'} {bvh.names[j]}")
    lines.append(pad + "{")
    lines.append(pad + "\tOFFSET " + " ".join(f"{x:.6f}" for x in bvh.offsets[j]))
    lines.append(f"{pad}\tCHANNELS {len(bvh.channels[j])} {' '.join(bvh.channels[j])}")
    children = np.flatnonzero(bvh.parents == j)
    for child in children:
      joint(int(child), depth + 1)
    if len(children) == 0:
      lines.extend([pad + "\tEnd Site", pad + "\t{", pad + "\t\tOFFSET 0.000000 0.000000 0.000000",
                    pad + "\t}"])
    lines.append(pad + "}")

  joint(0, 0)
  lines += ["MOTION", f"Frames: {len(bvh.frames)}", f"Frame Time: {bvh.frame_time:.8g}"]
  lines += [" ".join(f"{x:.6f}" for x in row) for row in bvh.frames]
  return "\n".join(lines) + "\n"


def write_bvh(path: str | os.PathLike, motion, fps: float | None = None) -> Bvh:
  """Writes HumanML3D features (T, 263; de-normalised) or joints (T, 22, 3) as BVH.

  Features take their bone directions from the 6-D rotations; where those disagree
  with the RIC positions (model outputs), pass features_to_joints(features) instead
  to follow exactly the positions a render shows.
  """
  if not os.fspath(path).lower().endswith(".bvh"):
    raise ValueError(f"BVH output path {os.fspath(path)!r} should end in .bvh")
  bvh = motion_to_bvh(motion, fps)
  write_text(path, bvh_text(bvh))
  return bvh
