"""File-level conversions for custom data: joints files <-> feature files."""
from __future__ import annotations

import os

import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data import features as feature_math
from mgpt_jax.data import formats
from mgpt_jax.data.skeletons import Skeleton, get_skeleton, skeleton_for_dim, skeleton_for_joints
from mgpt_jax.data.stats import Normalizer


def joints_file_to_features(joints_path, out_path, dataset: str | None = None, *,
                            official: bool = False, reference_joints=None) -> np.ndarray:
  """Writes the features (T-1, D) float32 of a (T, J, 3) joints file.

  reference_joints: a `new_joints` clip of the target dataset whose bone lengths
  define the uniform skeleton (needed for exact KIT-ML numbers).
  """
  atomic_io.check_not_input(out_path, joints_path, reference_joints)
  joints = formats.load_joints(joints_path)
  skeleton = _skeleton(dataset, joints_path, num_joints=joints.shape[1])
  if reference_joints is not None:
    skeleton = skeleton.with_bone_lengths_from(formats.load_joints(reference_joints,
                                                                   skeleton.num_joints))
  try:
    features = feature_math.joints_to_features(joints, skeleton, official=official)
  except ValueError as e:
    raise formats.MotionDataError(joints_path, str(e)) from None
  features = features.astype(np.float32)
  atomic_io.save_npy(out_path, features)
  return features


def features_file_to_joints(features_path, out_path, dataset: str | None = None, *,
                            stats_dir=None, stats_kind: str = "dataset") -> np.ndarray:
  """Writes the joints (T, J, 3) float32 of a feature file.

  With `stats_dir` the features are taken as normalised and de-normalised first.
  """
  atomic_io.check_not_input(out_path, features_path)
  array = formats.load_npy(features_path)
  if array.ndim != 2:
    raise formats.MotionDataError(features_path,
                                  f"expected features of shape (T, D), got {array.shape}")
  skeleton = _skeleton(dataset, features_path, feature_dim=array.shape[1])
  features = formats.load_features(features_path, skeleton.feature_dim).astype(np.float64)
  if stats_dir is not None:
    features = Normalizer.from_dir(stats_dir, stats_kind, skeleton.feature_dim).denormalize(features)
  joints = feature_math.features_to_joints(features, skeleton.num_joints).astype(np.float32)
  atomic_io.save_npy(out_path, joints)
  return joints


def load_motion_features(path, dataset: str = "humanml3d") -> np.ndarray:
  """Features (T, D) float32 in dataset units from a user's motion file, whatever its kind.

  Accepts .npy features (T, D) or joints (T, J, 3), and .bvh of any rig (HumanML3D only).
  """
  skeleton = get_skeleton(dataset)
  ext = os.path.splitext(os.fspath(path))[1].lower()
  if ext == ".bvh":
    if skeleton.name != "humanml3d":
      raise formats.MotionDataError(path, f"BVH input maps onto the 22-joint HumanML3D skeleton; "
                                    f"this model is {skeleton.name}")
    from mgpt_jax.data.bvh_import import import_bvh  # pylint: disable=g-import-not-at-top
    joints = import_bvh(path).joints
  elif ext == ".npy":
    shape = formats.load_npy(path, header_only=True).shape
    if len(shape) == 2:
      return formats.load_features(path, skeleton.feature_dim).astype(np.float32)
    if len(shape) != 3:
      raise formats.MotionDataError(path, f"shape {shape}: expected features (T, "
                                    f"{skeleton.feature_dim}) or joints (T, {skeleton.num_joints}, 3)")
    joints = formats.load_joints(path, skeleton.num_joints)
  else:
    raise formats.MotionDataError(path, "expected a motion file: .npy (features or joints) or .bvh")
  try:
    return feature_math.joints_to_features(joints, skeleton).astype(np.float32)
  except ValueError as e:
    raise formats.MotionDataError(path, str(e)) from None


def _skeleton(dataset, path, num_joints=None, feature_dim=None) -> Skeleton:
  try:
    if dataset is None:
      return (skeleton_for_joints(num_joints) if num_joints is not None
              else skeleton_for_dim(feature_dim))
    skeleton = get_skeleton(dataset)
  except ValueError as e:
    raise formats.MotionDataError(path, str(e)) from None
  if num_joints is not None and num_joints != skeleton.num_joints:
    raise formats.MotionDataError(path, f"has {num_joints} joints; {skeleton.name} expects "
                                  f"{skeleton.num_joints}")
  if feature_dim is not None and feature_dim != skeleton.feature_dim:
    raise formats.MotionDataError(path, f"has {feature_dim}-d features; {skeleton.name} expects "
                                  f"{skeleton.feature_dim}-d")
  return skeleton
