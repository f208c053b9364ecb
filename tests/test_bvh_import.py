"""`mgpt data from-bvh`: BVH files of other rigs (names, units, up axis, fps) onto our skeleton."""
import dataclasses
import json
import os
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mgpt_jax import cli
from mgpt_jax.data import bvh_import as BI
from mgpt_jax.data.features import joints_to_features
from mgpt_jax.data.skeletons import HUMANML3D
from mgpt_jax.data.synthetic import generate_motion
from mgpt_jax.data.validate import validate_dataset
from mgpt_jax.inference import bvh as B

# Our writer's names -> other rigs' names (joints not listed keep the template name).
SMPL_NAMES = {"Hips": "Pelvis", "LeftUpLeg": "L_Hip", "LeftLeg": "L_Knee", "LeftFoot": "L_Ankle",
              "LeftToe": "L_Foot", "Spine": "Spine1", "Spine1": "Spine2", "Spine2": "Spine3",
              "LeftShoulder": "L_Collar", "LeftArm": "L_Shoulder", "LeftForeArm": "L_Elbow",
              "LeftHand": "L_Wrist"}
SMPL_NAMES.update({k.replace("Left", "Right"): v.replace("L_", "R_")
                   for k, v in SMPL_NAMES.items() if "Left" in k})
CMU_NAMES = {"Spine": "LowerBack", "Spine1": "Spine", "Spine2": "Spine1",
             "LeftToe": "LeftToeBase", "RightToe": "RightToeBase"}
# Our y-up frame into a z-up one: (x, y, z) -> (x, -z, y), the inverse of the importer's turn.
Y_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


@pytest.fixture(scope="module")
def motion():
  """(T, 22, 3) joints at 20 fps, 3 s, walking and waving: every joint moves."""
  return generate_motion(0, 0, HUMANML3D, actions=["walk", "wave"]).joints[:60]


def _upsample(joints: np.ndarray, factor: float) -> np.ndarray:
  return BI.resample(joints, 20.0, 20.0 * factor)


def _foreign(bvh: B.Bvh, names=None, scale=1.0, z_up=False, extra_hip_joint=False) -> B.Bvh:
  """The same motion as another rig would write it."""
  frames, offsets = bvh.frames.copy(), bvh.offsets * scale
  frames[:, :3] *= scale
  if z_up:  # turn the whole body: only the root's channels change
    frames[:, :3] = frames[:, :3] @ Y_TO_Z_UP.T
    root = Rotation.from_euler("ZYX", frames[:, [3, 4, 5]], degrees=True).as_matrix()
    frames[:, 3:6] = Rotation.from_matrix(Y_TO_Z_UP @ root).as_euler("ZYX", degrees=True)
  parents, channels, bvh_names = list(bvh.parents), list(bvh.channels), list(bvh.names)
  if extra_hip_joint:  # CMU's LHipJoint: a joint between the hips and the left thigh
    half = offsets[1] / 2
    offsets = np.concatenate([offsets[:1], half[None], half[None], offsets[2:]])
    parents = [-1, 0, 1] + [p + 1 if p > 0 else p for p in parents[2:]]
    bvh_names.insert(1, "LHipJoint")
    channels.insert(1, B.JOINT_CHANNELS)
    frames = np.concatenate([frames[:, :6], np.zeros((len(frames), 3)), frames[:, 6:]], axis=1)
  if names:
    bvh_names = [names.get(n, n) for n in bvh_names]
  return dataclasses.replace(bvh, names=tuple(bvh_names), parents=np.array(parents),
                             offsets=offsets, channels=tuple(channels), frames=frames)


def _write(path, bvh: B.Bvh) -> str:
  path.write_text(B.bvh_text(bvh))
  return str(path)


def test_round_trip_through_our_writer(motion, tmp_path):
  B.write_bvh(tmp_path / "ours.bvh", motion)
  clip = BI.import_bvh(tmp_path / "ours.bvh")
  assert (clip.rig, clip.unit, clip.up, clip.source_fps) == ("mixamo", "m", "y", 20.0)
  assert np.abs(clip.joints - motion).max() < 5e-6  # the file's 6 decimals


@pytest.mark.parametrize("rig, names, unit, scale, z_up, fps, extra, tolerance", [
    ("smpl", SMPL_NAMES, "cm", 100.0, True, 60.0, False, 1e-5),
    ("cmu", CMU_NAMES, "inch", 1 / 0.0254, False, 120.0, True, 1e-5),
    ("mixamo", {n: "mixamorig:" + n.replace("Toe", "ToeBase") for n in B.HUMANML3D_NAMES},
     "mm", 1000.0, True, 30.0, False, 0.02),  # 20 -> 30 -> 20 fps interpolates: cm, not exact
])
def test_other_rigs_units_axes_and_rates(motion, tmp_path, rig, names, unit, scale, z_up, fps,
                                         extra, tolerance):
  written = B.motion_to_bvh(_upsample(motion, fps / 20), fps=fps)
  path = _write(tmp_path / f"{rig}.bvh", _foreign(written, names, scale, z_up, extra))
  clip = BI.import_bvh(path)
  assert (clip.rig, clip.unit, clip.up) == (rig, unit, "z" if z_up else "y")
  assert clip.source_fps == fps and clip.fps == 20.0  # the file's rounded Frame Time, snapped
  # What our rig's file holds (the writer fits one rigid skeleton to the interpolated
  # joints, ~0.3 mm off), at 20 fps: 30 fps keeps only the frames up to 2.93 s.
  expected = B.bvh_to_joints(written, B.HUMANML3D_NAMES)[::int(fps // 20)] if fps % 20 == 0 \
      else motion
  assert len(clip.joints) == (len(motion) if fps % 20 == 0 else len(motion) - 1)
  assert np.abs(clip.joints - expected[:len(clip.joints)]).max() < tolerance
  told = BI.import_bvh(path, unit=unit, up="z" if z_up else "y")  # explicit options agree
  np.testing.assert_allclose(told.joints, clip.joints)


def test_joint_map_for_unknown_names(motion, tmp_path, capsys):
  bvh = _foreign(B.motion_to_bvh(motion), {"LeftForeArm": "Bone_007", "Head": "Skull"})
  path = _write(tmp_path / "odd.bvh", bvh)
  with pytest.raises(BI.BvhImportError, match=r"no joint for \['head', 'left_elbow'\].*joint-map"):
    BI.import_bvh(path)
  mapping = tmp_path / "map.json"
  mapping.write_text(json.dumps({"left_elbow": "Bone_007", "15": "Skull"}))
  out = str(tmp_path / "odd.npy")
  assert cli.main(["data", "from-bvh", path, out, "--joints", "--joint-map", str(mapping)]) == 0
  assert "rig mixamo + joint-map" in capsys.readouterr().out
  assert np.abs(np.load(out) - motion).max() < 5e-6
  mapping.write_text(json.dumps({"elbow": "Bone_007"}))
  assert cli.main(["data", "from-bvh", path, out, "--overwrite", "--joint-map", str(mapping)]) == 2
  assert "unknown joint 'elbow'" in capsys.readouterr().err


def test_shared_template(shared_data, tmp_path, capsys):
  """momask's template.bvh (SMPL-like, metres, y up, 60 fps) -> features at 20 fps."""
  src = os.path.join(shared_data, "bvh", "template.bvh")
  out = str(tmp_path / "template.npy")
  assert cli.main(["data", "from-bvh", src, out]) == 0
  printed = capsys.readouterr().out
  assert "rig mixamo (22 of 22 joints), unit m, y up, 60 fps -> 20 fps, 240 frames" in printed
  features = np.load(out)
  assert features.shape == (239, 263) and features.dtype == np.float32
  np.testing.assert_allclose(features, joints_to_features(BI.import_bvh(src).joints, HUMANML3D),
                             atol=1e-5)
  height = BI.import_bvh(src).joints[0, :, 1].max() - BI.import_bvh(src).joints[0, :, 1].min()
  assert 1.4 < height < 1.9  # a person, in metres
  assert cli.main(["data", "from-bvh", src, out]) == 2  # never overwritten without --overwrite
  assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("edit, match", [
    (lambda text: "hello", "not a readable BVH"),
    (lambda text: text.replace("Frames: 60", "Frames: 61"), "motion values, expected 61"),
    (lambda text: text.replace("LeftUpLeg", "Thigh_L").replace("RightUpLeg", "Thigh_R"),
     r"no joint for \['left_hip', 'right_hip'\]"),
    (lambda text: text.replace("Frame Time: 0.05", "Frame Time: 0"), "Frame Time 0"),
])
def test_refused_files_say_why(motion, tmp_path, capsys, edit, match):
  B.write_bvh(tmp_path / "ok.bvh", motion)
  bad = tmp_path / "bad.bvh"
  bad.write_text(edit((tmp_path / "ok.bvh").read_text()))
  assert cli.main(["data", "from-bvh", str(bad), str(tmp_path / "x.npy")]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and str(bad) in err
  assert re.search(match, err), err
  assert not os.path.exists(tmp_path / "x.npy")


def test_unit_and_up_that_cannot_be_told(motion, tmp_path):
  tiny = _write(tmp_path / "tiny.bvh", _foreign(B.motion_to_bvh(motion), scale=1e-5))
  with pytest.raises(BI.BvhImportError, match="cannot tell the unit.*--unit"):
    BI.import_bvh(tiny)
  lying = _foreign(B.motion_to_bvh(motion))
  root = Rotation.from_euler("ZYX", lying.frames[:, 3:6], degrees=True)
  lying.frames[:, 3:6] = (Rotation.from_euler("z", 90, degrees=True) * root).as_euler(
      "ZYX", degrees=True)  # x up
  with pytest.raises(BI.BvhImportError, match="neither \\+y nor \\+z is up; pass --up"):
    BI.import_bvh(_write(tmp_path / "lying.bvh", lying))


def test_directory_to_dataset(motion, tmp_path, capsys):
  src = tmp_path / "mocap"
  (src / "session2").mkdir(parents=True)
  B.write_bvh(src / "walk.bvh", motion)
  _write(src / "session2" / "walk_cm.bvh",
         _foreign(B.motion_to_bvh(_upsample(motion, 3), fps=60), SMPL_NAMES, 100.0, True))
  B.write_bvh(src / "wave.bvh", motion[::-1])
  B.write_bvh(src / "short.bvh", motion[:30])
  (src / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
  (src / "notes.txt").write_text("not a motion")
  out = str(tmp_path / "dataset")
  assert cli.main(["data", "from-bvh", str(src), out]) == 0
  printed = capsys.readouterr().out
  assert "converted 3 BVH files" in printed and "skipped 2" in printed
  assert "short.bvh: 30 frames at 20 fps, under the dataset's minimum of 40" in printed
  assert "broken.bvh: not a readable BVH: file ends early" in printed
  assert sorted(open(os.path.join(out, "all.txt")).read().split()) == [
      "session2_walk_cm", "walk", "wave"]
  walk = np.load(os.path.join(out, "new_joint_vecs", "walk.npy"))
  np.testing.assert_allclose(np.load(os.path.join(out, "new_joint_vecs", "session2_walk_cm.npy")),
                             walk, atol=1e-4)
  assert len(open(os.path.join(out, "skipped.txt")).read().splitlines()) == 2
  report = validate_dataset(out)
  assert report.clips == 3
  assert all("caption" in str(p) or "text" in str(p) for p in report.errors), report.errors
  assert cli.main(["data", "from-bvh", str(src), out]) == 2  # an existing dataset stays
  assert "overwrite" in capsys.readouterr().err
