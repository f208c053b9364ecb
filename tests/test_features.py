"""Feature math against the real HumanML3D clips and on synthetic spins."""
import os

import jax
import numpy as np
import pytest

from mgpt_jax.data import features as F
from mgpt_jax.data import quaternion as Q
from mgpt_jax.data.skeletons import HUMANML3D, KIT, FeatureLayout

CLIPS = ("012314", "000000")
SMOOTHING_TAIL = 80  # frames at the end where the smoothed facing legitimately differs


def _clip(shared_data, clip_id):
  root = os.path.join(shared_data, "humanml3d")
  features = np.load(os.path.join(root, "new_joint_vecs", clip_id + ".npy")).astype(np.float64)
  joints = np.load(os.path.join(root, "new_joints", clip_id + ".npy")).astype(np.float64)
  return features, joints


@pytest.mark.parametrize("clip_id", CLIPS)
def test_features_to_joints_matches_new_joints(shared_data, clip_id):
  features, joints = _clip(shared_data, clip_id)
  assert np.abs(F.features_to_joints(features) - joints).max() < 1e-5


@pytest.mark.parametrize("clip_id", CLIPS)
def test_joints_features_joints_round_trip(shared_data, clip_id):
  _, joints = _clip(shared_data, clip_id)
  recovered = F.features_to_joints(F.joints_to_features(joints, HUMANML3D))
  assert recovered.shape == joints[:-1].shape
  assert np.abs(recovered - joints[:-1]).max() < 1e-5


def _facing_independent_dims(layout: FeatureLayout) -> np.ndarray:
  """Dims that the smoothed facing does not touch."""
  keep = np.zeros(layout.dim, bool)
  keep[layout.root_y] = True
  keep[layout.ric.start + 1:layout.ric.stop:3] = True  # y of RIC
  keep[layout.local_vel.start + 1:layout.local_vel.stop:3] = True  # y of local velocities
  facing_joints = (1, 2, 3, 13, 14)  # rotations relative to the root's facing
  for joint in range(1, layout.num_joints):
    if joint not in facing_joints:
      start = layout.rot6d.start + 6 * (joint - 1)
      keep[start:start + 6] = True
  keep[layout.contacts] = True
  return keep


@pytest.mark.parametrize("clip_id", CLIPS)
def test_reextracted_features_match_released(shared_data, clip_id):
  released, joints = _clip(shared_data, clip_id)
  ours = F.joints_to_features(joints, HUMANML3D)
  released = released[:-1]
  assert ours.shape == released.shape
  layout = HUMANML3D.layout
  tolerance = np.full(layout.dim, 1e-5)
  tolerance[layout.rot6d] = 5e-5
  tolerance[layout.contacts] = 0.0
  head = slice(0, len(ours) - SMOOTHING_TAIL)
  assert (np.abs(ours[head] - released[head]) <= tolerance).all()
  keep = _facing_independent_dims(layout)
  tail = slice(len(ours) - SMOOTHING_TAIL, None)
  assert (np.abs(ours[tail][:, keep] - released[tail][:, keep]) <= tolerance[keep]).all()
  # The facing-dependent dims really do differ in the tail: the test is not vacuous.
  assert np.abs(ours[tail][:, ~keep] - released[tail][:, ~keep]).max() > 1e-5


def _spinning_rest_pose(skeleton, frames=90, turns=1.25, speed=0.01):
  """The skeleton's rest pose walking forward while spinning past 180 degrees."""
  rest = F.forward_kinematics(np.tile([1.0, 0, 0, 0], (1, skeleton.num_joints, 1)),
                              np.zeros((1, 3)), skeleton)[0]
  rest[:, 1] -= rest[:, 1].min()
  # KIT's raw offsets face -Z; start the clip facing +Z as the procedure leaves it.
  rest = Q.qrot(Q.qbetween(F.facing_direction(rest, skeleton), [0.0, 0, 1]), rest)
  angle = np.linspace(0, 2 * np.pi * turns, frames)
  q = Q.yaw_quat(angle)[:, None].repeat(skeleton.num_joints, 1)
  joints = Q.qrot(q, np.broadcast_to(rest, (frames,) + rest.shape))
  joints[:, :, 2] += speed * np.arange(frames)[:, None] * skeleton.bone_lengths[4]
  return joints


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=lambda s: s.name)
def test_spin_past_180_round_trips_with_the_sign_fix(skeleton):
  joints = _spinning_rest_pose(skeleton)
  features = F.joints_to_features(joints, skeleton)
  assert features.shape == (len(joints) - 1, skeleton.feature_dim)
  scale = max(skeleton.bone_lengths)
  fixed = F.features_to_joints(features)
  assert np.abs(fixed - joints[:-1]).max() < 1e-6 * scale
  official = F.features_to_joints(F.joints_to_features(joints, skeleton, official=True))
  assert np.abs(official - joints[:-1]).max() > 0.05 * scale


def test_jax_features_to_joints_matches_numpy(shared_data):
  features, _ = _clip(shared_data, "012314")
  batch = np.stack([features[:160], features[10:170]]).astype(np.float32)
  ours = jax.jit(F.jax_features_to_joints)(batch)
  assert ours.shape == (2, 160, 22, 3)
  np.testing.assert_allclose(np.asarray(ours), F.features_to_joints(batch.astype(np.float64)),
                             atol=1e-5)


def test_layouts():
  assert HUMANML3D.feature_dim == 263 and KIT.feature_dim == 251
  layout = HUMANML3D.layout
  assert (layout.ric, layout.rot6d, layout.local_vel, layout.contacts) == (
      slice(4, 67), slice(67, 193), slice(193, 259), slice(259, 263))


def test_bad_joints_are_rejected():
  with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
    F.joints_to_features(np.zeros((10, 21, 3)), HUMANML3D)
  with pytest.raises(ValueError, match="at least 2 frames"):
    F.joints_to_features(np.zeros((1, 22, 3)), HUMANML3D)
  joints = _spinning_rest_pose(HUMANML3D, frames=10)
  joints[3, 5] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    F.joints_to_features(joints, HUMANML3D)


def test_qbetween_handles_opposite_directions():
  q = Q.qbetween(np.array([[0.0, 0, 1], [0, 1, 0]]), np.array([[0.0, 0, -1], [0, 1, 0]]))
  assert np.isfinite(q).all()
  np.testing.assert_allclose(Q.qrot(q[0], np.array([0.0, 0, 1])), [0, 0, -1], atol=1e-12)
  np.testing.assert_allclose(q[1], [1, 0, 0, 0], atol=1e-12)
