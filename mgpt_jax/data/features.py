"""Motion features both ways: joints (T, J, 3) <-> HumanML3D/KIT feature vectors.

joints -> features is the full HumanML3D procedure: retarget to the uniform
skeleton, put on the floor, move the first root to the origin, turn the first
frame to face +Z, then root yaw velocity, root linear velocity, root height,
rotation-invariant (RIC) joint positions, 6-D joint rotations from inverse
kinematics, local joint velocities and foot contacts. T joint frames give
T - 1 feature rows.

features -> joints is `recover_from_ric`, written once for numpy and jax.numpy.

One deliberate difference from the reference: the reference stores the yaw
velocity as arcsin of the y part of r[t+1] * r[t]^-1 without fixing the
quaternion's sign, so a facing that crosses +-180 degrees gets a velocity of the
wrong sign. We take the canonical sign (w >= 0) unless `official=True`.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from mgpt_jax.data import quaternion as quat
from mgpt_jax.data.skeletons import Skeleton, skeleton_for_dim

FACING_SMOOTHING_SIGMA = 20.0  # frames; the reference smooths the facing over the whole clip

_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])


# --------------------------------------------------------------------------- features -> joints


def features_to_joints(features, num_joints: int | None = None, xp=np):
  """Recovers joint positions (..., T, J, 3) from de-normalised features (..., T, D).

  Works on numpy arrays (xp=np) and inside jit (xp=jax.numpy).
  """
  if num_joints is None:
    num_joints = skeleton_for_dim(features.shape[-1]).num_joints
  rot_vel = features[..., 0]
  # Exclusive cumulative sum: frame t is turned by the velocities of frames < t.
  shifted = xp.concatenate([xp.zeros_like(rot_vel[..., :1]), rot_vel[..., :-1]], axis=-1)
  half_angle = xp.cumsum(shifted, axis=-1)
  zeros = xp.zeros_like(half_angle)
  root_quat = xp.stack([xp.cos(half_angle), zeros, xp.sin(half_angle), zeros], axis=-1)
  root_quat_inv = quat.qinv(root_quat, xp=xp)

  lin_vel = features[..., :-1, 1:3]
  step = xp.stack([lin_vel[..., 0], xp.zeros_like(lin_vel[..., 0]), lin_vel[..., 1]], axis=-1)
  step = xp.concatenate([xp.zeros_like(step[..., :1, :]), step], axis=-2)
  root_xz = xp.cumsum(quat.qrot(root_quat_inv, step, xp=xp), axis=-2)
  root = xp.stack([root_xz[..., 0], features[..., 3], root_xz[..., 2]], axis=-1)

  ric = features[..., 4:4 + 3 * (num_joints - 1)]
  ric = ric.reshape(ric.shape[:-1] + (num_joints - 1, 3))
  inv = xp.broadcast_to(root_quat_inv[..., None, :], ric.shape[:-1] + (4,))
  local = quat.qrot(inv, ric, xp=xp)
  offset = xp.stack([root[..., 0], xp.zeros_like(root[..., 0]), root[..., 2]], axis=-1)
  return xp.concatenate([root[..., None, :], local + offset[..., None, :]], axis=-2)


def jax_features_to_joints(features, num_joints: int | None = None):
  """`features_to_joints` in jax.numpy, for use inside jit."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return features_to_joints(jnp.asarray(features), num_joints, xp=jnp)


# --------------------------------------------------------------------------- kinematics


def forward_kinematics(local_quats: np.ndarray, root_pos: np.ndarray, skeleton: Skeleton,
                       offsets: np.ndarray | None = None) -> np.ndarray:
  """Joint positions (T, J, 3) from per-joint local rotations (T, J, 4) and root positions."""
  offsets = skeleton.offsets if offsets is None else offsets
  joints = np.zeros(local_quats.shape[:-1] + (3,))
  joints[:, 0] = root_pos
  for chain in skeleton.chains:
    rotation = local_quats[:, 0]
    for parent, child in zip(chain[:-1], chain[1:]):
      rotation = quat.qmul(rotation, local_quats[:, child])
      joints[:, child] = quat.qrot(rotation, np.broadcast_to(offsets[child], joints[:, child].shape))
      joints[:, child] += joints[:, parent]
  return joints


def facing_direction(joints: np.ndarray, skeleton: Skeleton, *,
                     for_ik: bool = False) -> np.ndarray:
  """Unit horizontal facing direction of each frame of joints (..., J, 3).

  The reference unpacks the face joints in a different order inside its
  inverse kinematics, so there the hip vector runs left-to-right while the
  shoulder vector runs right-to-left; their sum still points to the right
  because shoulders are wider than hips. Feature values depend on it, so both
  variants are kept.
  """
  r_hip, l_hip, r_sho, l_sho = skeleton.face_joints
  hips = joints[..., r_hip, :] - joints[..., l_hip, :]
  if for_ik:
    hips = -hips
  across = hips + joints[..., r_sho, :] - joints[..., l_sho, :]
  across = across / np.linalg.norm(across, axis=-1, keepdims=True)
  return np.cross(_UP, across)


def inverse_kinematics(joints: np.ndarray, skeleton: Skeleton, *,
                       smooth_forward: bool) -> np.ndarray:
  """Local joint rotations (T, J, 4) that map the unit raw offsets onto the bones.

  The root rotation turns the (optionally smoothed) facing to +Z; frame 0's is
  the identity, as in the reference.
  """
  forward = facing_direction(joints, skeleton, for_ik=True)
  if smooth_forward:
    forward = gaussian_filter1d(forward, FACING_SMOOTHING_SIGMA, axis=0, mode="nearest")
  forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
  root = quat.qbetween(forward, _FORWARD)
  root[0] = (1.0, 0.0, 0.0, 0.0)

  local = np.zeros(joints.shape[:-1] + (4,))
  local[:, 0] = root
  raw = np.asarray(skeleton.raw_offsets, np.float64)
  for chain in skeleton.chains:
    rotation = root
    for parent, child in zip(chain[:-1], chain[1:]):
      bone = joints[:, child] - joints[:, parent]
      bone = bone / np.linalg.norm(bone, axis=-1, keepdims=True)
      world = quat.qbetween(np.broadcast_to(raw[child], bone.shape), bone)
      local[:, child] = quat.qmul(quat.qinv(rotation), world)
      rotation = quat.qmul(rotation, local[:, child])
  return local


def retarget_to_uniform_skeleton(joints: np.ndarray, skeleton: Skeleton) -> np.ndarray:
  """Same motion on the skeleton's bone lengths, root path scaled by the leg-length ratio."""
  source = skeleton.bone_lengths_of(joints[0])
  target = np.asarray(skeleton.bone_lengths)
  legs = list(skeleton.lower_legs)
  scale = target[legs].sum() / source[legs].sum()
  local = inverse_kinematics(joints, skeleton, smooth_forward=False)
  return forward_kinematics(local, joints[:, 0] * scale, skeleton)


# --------------------------------------------------------------------------- joints -> features


def _check_joints(joints, skeleton: Skeleton) -> np.ndarray:
  joints = np.asarray(joints, np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (skeleton.num_joints, 3):
    raise ValueError(f"joints of shape {joints.shape} given; {skeleton.name} expects "
                     f"(T, {skeleton.num_joints}, 3)")
  if len(joints) < 2:
    raise ValueError(f"joints need at least 2 frames to give features, got {len(joints)}")
  if not np.isfinite(joints).all():
    raise ValueError("joints contain NaN or Inf values")
  return joints


def joints_to_features(joints, skeleton: Skeleton, *, official: bool = False) -> np.ndarray:
  """Features (T - 1, D) float64 of joint positions (T, J, 3), by the HumanML3D procedure.

  official=True reproduces the reference's yaw-velocity sign error (see module doc).
  """
  joints = _check_joints(joints, skeleton)
  positions = retarget_to_uniform_skeleton(joints, skeleton)
  positions[..., 1] -= positions[..., 1].min()
  positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])
  turn = quat.qbetween(facing_direction(positions[0], skeleton, for_ik=False), _FORWARD)
  positions = quat.qrot(np.broadcast_to(turn, positions.shape[:-1] + (4,)), positions)

  displacement = ((positions[1:] - positions[:-1])**2).sum(-1)
  feet = list(skeleton.left_foot) + list(skeleton.right_foot)
  contacts = (displacement[:, feet] < skeleton.contact_threshold).astype(np.float64)

  local = inverse_kinematics(positions, skeleton, smooth_forward=True)
  root_rot = local[:, 0]
  root_vel = quat.qrot(root_rot[1:], positions[1:, 0] - positions[:-1, 0])
  turn_per_frame = quat.qmul(root_rot[1:], quat.qinv(root_rot[:-1]))
  if not official:
    turn_per_frame = quat.canonical_sign(turn_per_frame)
  yaw_vel = np.arcsin(np.clip(turn_per_frame[:, 2], -1.0, 1.0))

  per_joint_rot = np.broadcast_to(root_rot[:, None], positions.shape[:-1] + (4,))
  centred = positions - positions[:, :1] * np.array([1.0, 0.0, 1.0])
  ric = quat.qrot(per_joint_rot, centred)
  local_vel = quat.qrot(per_joint_rot[:-1], positions[1:] - positions[:-1])
  rot6d = quat.quat_to_cont6d(local[:, 1:])

  n = len(positions) - 1
  return np.concatenate([
      yaw_vel[:, None], root_vel[:, [0, 2]], ric[:-1, 0, 1:2],
      ric[:-1, 1:].reshape(n, -1), rot6d[:-1].reshape(n, -1),
      local_vel.reshape(n, -1), contacts,
  ], axis=-1)
