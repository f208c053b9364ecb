"""Skeleton rendering (GIF/MP4) and BVH export: formats, errors, and FK against features_to_joints."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from mgpt_jax.data import quaternion as Q
from mgpt_jax.data.features import features_to_joints, joints_to_features
from mgpt_jax.data.skeletons import HUMANML3D
from mgpt_jax.data.synthetic import generate_motion
from mgpt_jax.inference import bvh as B
from mgpt_jax.inference.render import render_motion

# FK of the written file against features_to_joints, metres. The conversion itself
# is exact (~1e-7 m); what is left is the file's 6 decimals (1e-6 m, 1e-6 degrees).
FK_TOLERANCE_MEAN = 1e-5
FK_TOLERANCE_MAX = 5e-5


def _walking_skeleton(frames: int) -> np.ndarray:
  """A rest-pose HumanML3D body stepping along +Z and swinging its arms: every frame differs."""
  rest = np.zeros((HUMANML3D.num_joints, 3))
  for joint, parent in enumerate(HUMANML3D.parents):
    if parent >= 0:
      rest[joint] = rest[parent] + HUMANML3D.offsets[joint]
  joints = np.tile(rest, (frames, 1, 1))
  t = np.arange(frames)
  joints[..., 1] -= rest[:, 1].min()
  joints[..., 2] += 0.05 * t[:, None]
  joints[:, [18, 19, 20, 21], 1] += 0.1 * np.sin(t / 2)[:, None]
  return joints


def _fk_error(bvh: B.Bvh, joints: np.ndarray) -> np.ndarray:
  return np.linalg.norm(B.bvh_to_joints(bvh, B.HUMANML3D_NAMES) - joints, axis=-1)


# --------------------------------------------------------------------------- render


def test_render_gif_has_every_frame(tmp_path):
  joints = _walking_skeleton(12)
  out = tmp_path / "walk.gif"
  assert render_motion(joints, out, title="a person walks", follow=True) == str(out)
  with Image.open(out) as image:
    assert image.format == "GIF"
    assert image.n_frames == 12
    assert image.size == (480, 480)  # the readable default
  assert os.listdir(tmp_path) == ["walk.gif"]  # no temporary files left behind


def _mp4_frames(path) -> tuple[int, tuple[int, int], float]:
  """Frame count, frame size and duration (s) of a video, read back by ffmpeg itself."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
  reader = imageio_ffmpeg.read_frames(str(path))
  meta = next(reader)
  first = next(reader)
  reader.close()
  assert len(first) == meta["size"][0] * meta["size"][1] * 3
  return frames, tuple(meta["size"]), meta["duration"]


def test_render_mp4_out_of_the_box(tmp_path):
  """MP4 needs no system ffmpeg: the imageio-ffmpeg wheel's binary encodes it."""
  out = tmp_path / "walk.mp4"
  render_motion(_walking_skeleton(20), out, skeleton="humanml3d", title="a person walks")
  assert open(out, "rb").read(12)[4:8] == b"ftyp"
  frames, size, duration = _mp4_frames(out)
  assert frames == 20 and size == (480, 480) and duration == pytest.approx(1.0, abs=0.06)


def test_render_side_by_side(tmp_path):
  """Several motions share one animation as long as the longest, at one scale, each labelled."""
  out = tmp_path / "pair.mp4"
  short, long = _walking_skeleton(6), _walking_skeleton(10)
  render_motion([short, long], out, title="a person walks", titles=["generated", "ground truth"],
                size=200)  # rounded up to 208 for the codec's 16-pixel blocks
  frames, size, _ = _mp4_frames(out)
  assert frames == 10 and size == (416, 208)
  with pytest.raises(ValueError, match="2 titles given for 3 motions"):
    render_motion([short] * 3, tmp_path / "x.gif", titles=["a", "b"])
  with pytest.raises(ValueError, match="no motions"):
    render_motion([], tmp_path / "x.gif")


def test_render_mp4_without_ffmpeg_says_so(tmp_path, monkeypatch):
  from mgpt_jax.inference import render  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(render, "ffmpeg_executable", lambda: None)
  with pytest.raises(ValueError, match=r"MP4 encoder \(ffmpeg\).*imageio-ffmpeg.*\.gif"):
    render_motion(_walking_skeleton(3), tmp_path / "walk.mp4")
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("joints, path, kwargs, match", [
    (np.zeros((3, 22, 3)), "x.png", {}, r"'.*x\.png'.*\.gif"),
    (np.zeros((3, 21, 3)), "x.gif", {"skeleton": "humanml3d"}, "21 joints.*has 22"),
    (np.zeros((3, 23, 3)), "x.gif", {}, "no skeleton has 23 joints"),
    (np.zeros((3, 263)), "x.gif", {}, "features_to_joints"),
    (np.zeros((0, 22, 3)), "x.gif", {}, "no frames"),
    (np.full((3, 22, 3), np.nan), "x.gif", {}, "NaN"),
    (np.zeros((3, 22, 3)), "x.gif", {"fps": 0}, "fps"),
    (np.zeros((3, 22, 3)), "x.gif", {"size": 10}, "size"),
])
def test_render_rejects_bad_input(tmp_path, joints, path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    render_motion(joints, tmp_path / path, **kwargs)
  assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- BVH


def test_bvh_hierarchy_matches_template(shared_data, tmp_path):
  template = B.read_bvh(os.path.join(shared_data, "bvh", "template.bvh"))
  assert template.frames.shape == (720, 6 + 3 * 21)
  assert template.frame_time == pytest.approx(1 / 60, abs=1e-6)
  B.write_bvh(tmp_path / "x.bvh", _walking_skeleton(4))
  written = B.read_bvh(tmp_path / "x.bvh")
  assert written.names == template.names
  np.testing.assert_array_equal(written.parents, template.parents)
  assert written.channels == template.channels


def test_bvh_of_real_clip_reproduces_joints(shared_data, tmp_path):
  root = os.path.join(shared_data, "humanml3d")
  features = np.load(os.path.join(root, "new_joint_vecs", "000000.npy"), allow_pickle=False)
  joints = np.load(os.path.join(root, "new_joints", "000000.npy"), allow_pickle=False)
  for name, motion, target in (("features", features, features_to_joints(features)),
                               ("joints", joints, joints)):
    B.write_bvh(tmp_path / f"{name}.bvh", motion)
    bvh = B.read_bvh(tmp_path / f"{name}.bvh")
    assert len(bvh.frames) == len(motion) == 116
    assert bvh.frame_time == pytest.approx(1 / 20)
    error = _fk_error(bvh, target)
    assert error.mean() < FK_TOLERANCE_MEAN and error.max() < FK_TOLERANCE_MAX, name
    # The two branching joints get the clip's own rigid layout: SMPL hips are not 180 degrees apart.
    hips = bvh.offsets[[bvh.names.index("LeftUpLeg"), bvh.names.index("RightUpLeg")]]
    cosine = hips[0] @ hips[1] / np.linalg.norm(hips, axis=-1).prod()
    assert 60 < np.degrees(np.arccos(cosine)) < 75


def test_bvh_of_synthetic_motion(tmp_path):
  joints = generate_motion(0, 0, HUMANML3D, actions=["walk", "wave"]).joints
  features = joints_to_features(joints, HUMANML3D)
  bvh = B.write_bvh(tmp_path / "synth.bvh", features, fps=30)
  read = B.read_bvh(tmp_path / "synth.bvh")
  assert len(read.frames) == len(features) and read.frame_time == pytest.approx(1 / 30)
  np.testing.assert_allclose(read.frames, bvh.frames, atol=1e-6)
  error = _fk_error(read, features_to_joints(features))
  assert error.mean() < FK_TOLERANCE_MEAN and error.max() < FK_TOLERANCE_MAX
  error = _fk_error(B.motion_to_bvh(joints), joints)  # the joints path
  assert error.max() < 1e-6


def test_bvh_follows_features_to_joints_through_official_yaw_error():
  """Official features crossing +-180 degrees of facing integrate a wrong yaw; the export follows the RIC joints."""
  joints = _walking_skeleton(120)  # long enough that the smoothed facing (sigma 20) still turns
  angle = np.linspace(0.0, np.radians(400.0), 120)  # turns past facing -Z
  centre = joints[:, :1] * [1.0, 0.0, 1.0]
  turn = np.broadcast_to(Q.yaw_quat(angle)[:, None], joints.shape[:-1] + (4,))
  joints = Q.qrot(turn, joints - centre) + centre
  official = joints_to_features(joints, HUMANML3D, official=True)
  assert not np.allclose(official[:, 0], joints_to_features(joints, HUMANML3D)[:, 0])
  error = _fk_error(B.motion_to_bvh(official), features_to_joints(official))
  assert error.max() < 1e-6


@pytest.mark.parametrize("motion, match", [
    (np.zeros((5, 251)), r"\(5, 251\).*\(T, 263\) or joints \(T, 22, 3\)"),
    (np.zeros((5, 21, 3)), r"\(5, 21, 3\)"),
    (np.full((5, 22, 3), np.inf), "NaN or Inf"),
    (np.zeros((5, 263)), "normalised.*de-normalise"),
])
def test_bvh_rejects_bad_motion(tmp_path, motion, match):
  with pytest.raises(ValueError, match=match):
    B.write_bvh(tmp_path / "x.bvh", motion)
  assert not os.listdir(tmp_path)


def test_bvh_rejects_bad_path_fps_and_files(tmp_path):
  with pytest.raises(ValueError, match=r"x\.txt.*\.bvh"):
    B.write_bvh(tmp_path / "x.txt", _walking_skeleton(3))
  with pytest.raises(ValueError, match="fps"):
    B.write_bvh(tmp_path / "x.bvh", _walking_skeleton(3), fps=-1)
  good = B.bvh_text(B.motion_to_bvh(_walking_skeleton(3)))
  for broken, match in ((good[:-40], "motion values"), (good.replace("OFFSET", "OFSET", 1), "OFSET"),
                        (good.replace("Frames: 3", "Frames: x"), "Frames:.*number"),
                        (good.rstrip().rsplit(" ", 1)[0] + " oops\n", "MOTION values should be numbers")):
    path = tmp_path / "broken.bvh"
    path.write_text(broken)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*{match}"):
      B.read_bvh(path)
  bvh = B.motion_to_bvh(_walking_skeleton(3))
  bvh.channels = (("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Wrotation"),) + bvh.channels[1:]
  with pytest.raises(ValueError, match="'Wrotation' of joint 'Hips'"):
    B.bvh_to_joints(bvh)
