"""Any BVH onto the 22-joint HumanML3D skeleton: names, units, up axis and frame rate.

    clip = import_bvh("take.bvh")               # a BvhImport: joints (T, 22, 3), metres, y up, 20 fps
    features = joints_to_features(clip.joints, HUMANML3D)
    report = convert_directory("mocap/", "my_dataset/")   # the released layout, captions to add

Joint positions come from the file's own forward kinematics, so whatever extra
joints a rig has (CMU's LHipJoint, Mixamo's fingers, twist bones) are simply not
read. Which file joint is which of ours comes from a rig table (SMPL-like,
Mixamo-style incl. our own writer's template, CMU), tried whole, or from a user's
JSON map. Units and up axis are told, or read off the body: the leg length picks
the unit, the feet-to-head direction the up axis.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data import formats, stats
from mgpt_jax.data.bvh_file import Bvh, bvh_to_joints, read_bvh
from mgpt_jax.data.features import features_to_joints, joints_to_features
from mgpt_jax.data.skeletons import HUMANML3D

# Our joints by index, in SMPL's names: the keys of a --joint-map file.
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist")


def _sided_rig(centre: dict[int, tuple[str, ...]], sided: dict[tuple[int, int], tuple[str, ...]],
               prefixes=(("left", "right"), ("l", "r"))) -> tuple[tuple[str, ...], ...]:
  names = [()] * 22
  for index, candidates in centre.items():
    names[index] = candidates
  for (left, right), stems in sided.items():
    names[left] = tuple(p[0] + s for p in prefixes for s in stems)
    names[right] = tuple(p[1] + s for p in prefixes for s in stems)
  return tuple(names)


# Rig tables, tried in this order; a rig matches when all 22 joints are found.
# Names are compared normalised: lower case, no namespace ("mixamorig:"), no punctuation.
RIGS = {
    "smpl": _sided_rig(
        {0: ("pelvis", "hips", "hip"), 3: ("spine1",), 6: ("spine2",), 9: ("spine3",),
         12: ("neck",), 15: ("head",)},
        {(1, 2): ("hip",), (4, 5): ("knee",), (7, 8): ("ankle",), (10, 11): ("foot",),
         (13, 14): ("collar",), (16, 17): ("shoulder",), (18, 19): ("elbow",),
         (20, 21): ("wrist",)}),
    # Mixamo, and the SMPL-like template our BVH writer uses (LeftToe for LeftToeBase).
    "mixamo": _sided_rig(
        {0: ("hips",), 3: ("spine",), 6: ("spine1",), 9: ("spine2",), 12: ("neck",),
         15: ("head",)},
        {(1, 2): ("upleg",), (4, 5): ("leg",), (7, 8): ("foot",), (10, 11): ("toebase", "toe"),
         (13, 14): ("shoulder",), (16, 17): ("arm",), (18, 19): ("forearm",), (20, 21): ("hand",)},
        prefixes=(("left", "right"),)),
    # CMU mocap as converted to BVH (cgspeed / the CMU-BVH release): a LowerBack, no Spine2.
    "cmu": _sided_rig(
        {0: ("hips",), 3: ("lowerback",), 6: ("spine",), 9: ("spine1",), 12: ("neck",),
         15: ("head",)},
        {(1, 2): ("upleg",), (4, 5): ("leg",), (7, 8): ("foot",), (10, 11): ("toebase",),
         (13, 14): ("shoulder",), (16, 17): ("arm",), (18, 19): ("forearm",), (20, 21): ("hand",)},
        prefixes=(("left", "right"),)),
}
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}
UP_AXES = ("y", "z")
# Hip-knee plus knee-ankle of our skeleton, metres; a body's legs pick the file's unit.
_LEG_METRES = HUMANML3D.bone_lengths[4] + HUMANML3D.bone_lengths[7]
_PLAUSIBLE_LEG = (0.3, 2.0)  # metres: a small child to well over any adult


class BvhImportError(formats.MotionDataError):
  """A BVH that cannot be mapped onto the 22-joint skeleton."""


@dataclasses.dataclass
class BvhImport:
  joints: np.ndarray  # (T, 22, 3) metres, y up, at `fps`
  rig: str  # the rig table used, or "joint-map"
  unit: str
  up: str
  source_fps: float
  fps: float
  file_joints: int

  def summary(self) -> str:
    return (f"rig {self.rig} (22 of {self.file_joints} joints), unit {self.unit}, {self.up} up, "
            f"{self.source_fps:g} fps -> {self.fps:g} fps, {len(self.joints)} frames")


def normalise_name(name: str) -> str:
  name = name.rsplit(":", 1)[-1].lower()
  name = re.sub(r"^(mixamorig|bip0?1|cc_base|j_bip_c|def)[_ ]?", "", name)
  return re.sub(r"[^a-z0-9]", "", name)


def _find(bvh: Bvh, candidates: tuple[str, ...]) -> int | None:
  normalised = [normalise_name(n) for n in bvh.names]
  for candidate in candidates:
    if candidate in normalised:
      return normalised.index(candidate)
  return None


def read_joint_map(path) -> dict[int, str]:
  """A JSON object {our joint name or index: the file's joint name}."""
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise formats.MotionDataError(path, f"not a readable JSON joint map ({e})") from None
  if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
    raise formats.MotionDataError(path, 'expected a JSON object {"pelvis": "Root", ...} of '
                                  "joint names")
  mapping = {}
  for key, value in raw.items():
    if key in JOINT_NAMES:
      mapping[JOINT_NAMES.index(key)] = value
    elif key.isdigit() and int(key) < len(JOINT_NAMES):
      mapping[int(key)] = value
    else:
      raise formats.MotionDataError(path, f"unknown joint {key!r}: keys are our joint names "
                                    f"{list(JOINT_NAMES)} or indices 0-21")
  return mapping


def map_joints(bvh: Bvh, path, joint_map: dict[int, str] | None = None) -> tuple[list[int], str]:
  """File joint index of each of our 22 joints, and the rig table that gave them."""
  best_name, best = None, None
  for name, rig in RIGS.items():
    found = [_find(bvh, candidates) for candidates in rig]
    if best is None or sum(i is not None for i in found) > sum(i is not None for i in best):
      best_name, best = name, found
  if joint_map:
    for joint, file_name in joint_map.items():
      if file_name not in bvh.names:
        raise BvhImportError(path, f"--joint-map names {file_name!r} for {JOINT_NAMES[joint]}, "
                             f"but the file has no such joint; it has {list(bvh.names)}")
      best[joint] = bvh.names.index(file_name)
    best_name = "joint-map" if len(joint_map) == 22 else f"{best_name} + joint-map"
  missing = [JOINT_NAMES[j] for j, i in enumerate(best) if i is None]
  if missing:
    raise BvhImportError(path, f"cannot map the rig: no joint for {missing} (closest rig table "
                         f"{best_name}; known rigs {list(RIGS)}); pass --joint-map map.json "
                         '({"pelvis": "Hips", ...}); the file has ' + ", ".join(bvh.names))
  if len(set(best)) < 22:
    raise BvhImportError(path, "two of our joints map to the same file joint; check --joint-map")
  return best, best_name


def _unit(joints: np.ndarray, unit: str, path) -> tuple[str, float]:
  legs = (np.linalg.norm(joints[:, 4] - joints[:, 1], axis=-1)
          + np.linalg.norm(joints[:, 7] - joints[:, 4], axis=-1))
  leg = float(np.median(legs))
  if unit != "auto":
    if unit not in UNITS:
      raise BvhImportError(path, f"unknown unit {unit!r}: expected auto or one of {list(UNITS)}")
    return unit, UNITS[unit]
  name = min(UNITS, key=lambda u: abs(np.log(max(leg * UNITS[u], 1e-12) / _LEG_METRES)))
  metres = leg * UNITS[name]
  if not _PLAUSIBLE_LEG[0] <= metres <= _PLAUSIBLE_LEG[1]:
    raise BvhImportError(path, f"cannot tell the unit: the legs are {leg:.4g} file units long, "
                         f"no unit of {list(UNITS)} makes that a body; pass --unit")
  return name, UNITS[name]


def _up(joints: np.ndarray, up: str, path) -> str:
  if up != "auto":
    if up not in UP_AXES:
      raise BvhImportError(path, f"unknown up axis {up!r}: expected auto, y or z")
    return up
  ankles = (joints[:, 7] + joints[:, 8]) / 2
  direction = (joints[:, 15] - ankles).mean(0)
  axis = int(np.argmax(np.abs(direction)))
  if axis == 0 or direction[axis] < 0:
    raise BvhImportError(path, f"the body's feet-to-head direction is {np.round(direction, 3)}: "
                         "neither +y nor +z is up; pass --up y or --up z")
  return "yz"[axis - 1]


def resample(joints: np.ndarray, source_fps: float, fps: float) -> np.ndarray:
  """Linear interpolation of positions onto a `fps` clock starting at the first frame."""
  if abs(source_fps - fps) < 1e-9 * fps:
    return joints
  duration = (len(joints) - 1) / source_fps
  position = np.arange(int(np.floor(duration * fps + 1e-6)) + 1) * (source_fps / fps)
  lower = np.minimum(np.floor(position).astype(int), len(joints) - 1)
  upper = np.minimum(lower + 1, len(joints) - 1)
  weight = (position - lower)[:, None, None]
  return joints[lower] * (1 - weight) + joints[upper] * weight


def import_bvh(path, joint_map: dict[int, str] | None = None, unit: str = "auto",
               up: str = "auto", fps: float = HUMANML3D.fps) -> BvhImport:
  """Joints (T, 22, 3) in metres, y up, at `fps`, from a BVH file of any rig."""
  try:
    bvh = read_bvh(path)
    positions = bvh_to_joints(bvh)
  except OSError as e:
    raise formats.MotionDataError(path, f"cannot read ({e.strerror or e})") from None
  except (ValueError, UnicodeDecodeError) as e:
    reason = str(e).replace(f"{os.fspath(path)}: ", "")
    raise BvhImportError(path, f"not a readable BVH: {reason}") from None
  if len(bvh.frames) < 2:
    raise BvhImportError(path, f"has {len(bvh.frames)} frame(s); a motion needs at least 2")
  if not bvh.frame_time > 0:
    raise BvhImportError(path, f"Frame Time {bvh.frame_time} must be positive")
  if not np.isfinite(positions).all():
    raise BvhImportError(path, "motion values contain NaN or Inf")
  indices, rig = map_joints(bvh, path, joint_map)
  joints = positions[:, indices]
  unit, scale = _unit(joints, unit, path)
  joints = joints * scale
  up = _up(joints, up, path)
  if up == "z":  # a rotation of -90 degrees about x: (x, y, z) -> (x, z, -y), nothing mirrored
    joints = np.stack([joints[..., 0], joints[..., 2], -joints[..., 1]], axis=-1)
  source_fps = 1.0 / bvh.frame_time
  if abs(source_fps - round(source_fps)) < 1e-4 * source_fps:
    source_fps = float(round(source_fps))  # "Frame Time: 0.0166667" means 60 fps, not 59.99998
  joints = resample(joints, source_fps, fps)
  if len(joints) < 2:
    raise BvhImportError(path, f"lasts {(len(bvh.frames) - 1) * bvh.frame_time:.3g} s: under two "
                         f"frames at {fps:g} fps")
  return BvhImport(joints, rig, unit, up, source_fps, fps, len(bvh.names))


def bvh_file_to_npy(path, out_path, *, as_joints: bool = False, **options) -> tuple[np.ndarray,
                                                                                     BvhImport]:
  """Writes HumanML3D features (T-1, 263) float32, or the imported joints (T, 22, 3)."""
  clip = import_bvh(path, **options)
  array = clip.joints if as_joints else joints_to_features(clip.joints, HUMANML3D)
  array = array.astype(np.float32)
  atomic_io.save_npy(out_path, array)
  return array, clip


@dataclasses.dataclass
class DirectoryReport:
  out_dir: str
  converted: list[str]
  skipped: list[str]  # "<file>: <reason>"
  notes: list[str]

  def summary(self) -> str:
    lines = [f"converted {len(self.converted)} BVH files into {self.out_dir}; skipped "
             f"{len(self.skipped)}"]
    lines += [f"  skipped {s}" for s in self.skipped] + [f"  note: {n}" for n in self.notes]
    if self.converted:
      lines.append(f"  add captions as {formats.TEXTS_DIR}/<id>.txt (caption#tokens#0.0#0.0 "
                   "lines) before training")
    return "\n".join(lines)


def convert_directory(src_dir, out_dir, *, overwrite: bool = False, seed: int = 0,
                      progress=lambda items: items, **options) -> DirectoryReport:
  """Every .bvh under src_dir as a dataset in the released HumanML3D layout, written whole.

  Writes new_joint_vecs/, new_joints/, an empty texts/, train/val/test/train_val/all
  splits and Mean/Std.npy (+ meta/) from the train clips. Clips shorter than the
  dataset's minimum are skipped, with every other failure, and reported.
  """
  from mgpt_jax.data.synthetic.generator import split_ids  # pylint: disable=g-import-not-at-top
  src_dir = os.fspath(src_dir)
  files = sorted(os.path.relpath(os.path.join(root, name), src_dir)
                 for root, _, names in os.walk(src_dir) for name in names
                 if name.lower().endswith(".bvh"))
  if not files:
    raise formats.MotionDataError(src_dir, "has no .bvh files")
  converted, skipped, notes, motions = [], [], [], {}
  for relative in progress(files):
    motion_id = os.path.splitext(relative)[0].replace(os.sep, "_")
    if motion_id in motions:
      skipped.append(f"{relative}: id {motion_id!r} already taken by another file")
      continue
    try:
      clip = import_bvh(os.path.join(src_dir, relative), **options)
    except formats.MotionDataError as e:
      skipped.append(f"{relative}: {e.reason}")
      continue
    if len(clip.joints) < HUMANML3D.min_motion_len:
      skipped.append(f"{relative}: {len(clip.joints)} frames at {clip.fps:g} fps, under the "
                     f"dataset's minimum of {HUMANML3D.min_motion_len}")
      continue
    if len(clip.joints) > HUMANML3D.max_motion_len:
      notes.append(f"{relative}: {len(clip.joints)} frames, longer than the loaders take "
                   f"(< {formats.MAX_EXCLUSIVE_LEN}); caption segments (#start#end) select parts")
    motions[motion_id] = joints_to_features(clip.joints, HUMANML3D).astype(np.float32)
    converted.append(motion_id)
  if not converted:
    raise formats.MotionDataError(src_dir, "no BVH file could be converted:\n  "
                                  + "\n  ".join(skipped))
  with atomic_io.atomic_dir(out_dir, overwrite=overwrite) as tmp:
    os.makedirs(os.path.join(tmp, formats.TEXTS_DIR))
    for motion_id, features in motions.items():
      atomic_io.save_npy(os.path.join(tmp, formats.FEATURES_DIR, motion_id + ".npy"), features)
      atomic_io.save_npy(os.path.join(tmp, formats.JOINTS_DIR, motion_id + ".npy"),
                         features_to_joints(features).astype(np.float32))
    splits = {name: [converted[int(i)] for i in ids]
              for name, ids in split_ids(len(converted), seed).items()}
    splits["train_val"] = sorted(splits["train"] + splits["val"])
    splits["all"] = converted
    train = [motions[i] for i in splits["train"]] or list(motions.values())
    stats.compute_stats(train, HUMANML3D.num_joints).save(tmp, "dataset")
    stats.compute_stats(train, HUMANML3D.num_joints, feat_bias=stats.META_FEAT_BIAS).save(
        os.path.join(tmp, "meta"), "meta")
    for name in ("train", "val", "test", "train_val", "all"):
      atomic_io.write_text(os.path.join(tmp, f"{name}.txt"), "".join(i + "\n" for i in splits[name]))
    atomic_io.write_text(os.path.join(tmp, "skipped.txt"), "".join(s + "\n" for s in skipped))
  return DirectoryReport(os.fspath(out_dir), converted, skipped, notes)
