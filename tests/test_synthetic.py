"""The synthetic dataset: layout, determinism, KIT, and that actions do what their captions say."""
import itertools
import json
import os

import numpy as np
import pytest
from scipy.signal import find_peaks

from mgpt_jax.data import features as F
from mgpt_jax.data import formats, quaternion, stats
from mgpt_jax.data.skeletons import HUMANML3D, KIT
from mgpt_jax.data.synthetic import (ACTION_NAMES, SIDECAR, SynthReport, generate_motion,
                                     write_dataset)
from mgpt_jax.data.synthetic import actions as A
from mgpt_jax.data.synthetic import captions as C
from mgpt_jax.data.synthetic import generator as G
from mgpt_jax.data.synthetic.rig import rig_for

NUM = 30
SEED = 7


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synth") / "hml")
  report = write_dataset(out, NUM, seed=SEED, progress=False, workers=2)
  return out, report


def _read(*path):
  with open(os.path.join(*path), "rb") as f:
    return f.read()


def _files(root, sub):
  return {name: _read(root, sub, name) for name in sorted(os.listdir(os.path.join(root, sub)))}


# --------------------------------------------------------------------------- layout


def test_layout(synth):
  out, report = synth
  assert isinstance(report, SynthReport)
  assert (report.out_dir, report.num_motions, report.dataset) == (out, NUM, "humanml3d")
  ids = formats.read_split(out, "all")
  assert ids == [f"{i:06d}" for i in range(NUM)]
  total = 0
  for motion_id in ids:
    feats = np.load(os.path.join(out, "new_joint_vecs", motion_id + ".npy"))
    joints = np.load(os.path.join(out, "new_joints", motion_id + ".npy"))
    assert feats.dtype == np.float32 and feats.shape[1] == 263 and 40 <= len(feats) < 200
    assert joints.dtype == np.float32 and joints.shape == (len(feats), 22, 3)
    np.testing.assert_allclose(joints, F.features_to_joints(feats), atol=1e-5)
    with open(os.path.join(out, "texts", motion_id + ".txt"), encoding="utf-8") as f:
      captions = [formats.parse_caption_line(line) for line in f.read().splitlines()]
    assert sum(c.whole_clip for c in captions) >= 3
    assert all(c.text and c.tokens and "#" not in c.text for c in captions)
    total += len(feats)
  assert report.num_frames == total

  splits = {s: set(formats.read_split(out, s)) for s in ("train", "val", "test", "train_val")}
  assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"]
              or splits["val"] & splits["test"])
  assert splits["train"] | splits["val"] | splits["test"] == set(ids)
  assert splits["train_val"] == splits["train"] | splits["val"]
  assert len(splits["train"]) == 24 and splits["val"] and splits["test"]

  normalizer = stats.Normalizer.from_dir(out, "dataset", dim=263)
  meta = stats.Normalizer.from_dir(os.path.join(out, "meta"), "meta", dim=263)
  train = [np.load(os.path.join(out, "new_joint_vecs", i + ".npy"))
           for i in sorted(splits["train"])]
  direct = stats.compute_stats(train, 22, feat_bias=1.0)
  np.testing.assert_allclose(normalizer.mean, direct.mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(normalizer.std, direct.std, rtol=1e-5)
  np.testing.assert_allclose(meta.std[:4] * 25.0, normalizer.std[:4], rtol=1e-5)

  readme = _read(out, "README.txt").decode()
  assert "SYNTHETIC" in readme and f"seed: {SEED}" in readme and "humanml3d" in readme
  records = [json.loads(line) for line in _read(out, SIDECAR).decode().splitlines()]
  assert [r["id"] for r in records] == ids
  for record in records:
    assert 1 <= len(record["actions"]) <= 3
    for action in record["actions"]:
      assert action["name"] in ACTION_NAMES
      assert 0 < action["start"] < action["end"] <= record["num_frames"]


def test_entries_include_sub_clips(synth):
  out, _ = synth
  data = formats.MotionDataset(out, "humanml3d")
  entries = data.entries("train")
  assert not entries.skipped and entries.filtered == 0
  subs = [e for e in entries.entries if e.motion_id != e.name]
  assert subs and len(entries.entries) > len(data.split_ids("train"))
  records = [json.loads(line) for line in _read(out, SIDECAR).decode().splitlines()]
  records = {r["id"]: r for r in records}
  for entry in subs:  # a sub-clip is exactly one action's frames
    spans = {(a["start"], a["end"]) for a in records[entry.motion_id]["actions"]}
    assert (entry.start, entry.end) in spans
    assert len(records[entry.motion_id]["actions"]) >= 2


def test_same_seed_same_bytes_any_worker_count(synth, tmp_path):
  out, _ = synth
  again = str(tmp_path / "again")
  write_dataset(again, NUM, seed=SEED, progress=False, workers=1)
  for sub in ("new_joint_vecs", "new_joints", "texts"):
    assert _files(out, sub) == _files(again, sub)
  for name in ("Mean.npy", "Std.npy", "train.txt", "test.txt", SIDECAR):
    assert _read(out, name) == _read(again, name)

  other = str(tmp_path / "other")
  write_dataset(other, 4, seed=SEED + 1, progress=False, workers=1)
  theirs = _files(other, "new_joint_vecs")
  assert all(theirs[name] != _files(out, "new_joint_vecs")[name] for name in theirs)


def test_kit_layout(tmp_path):
  out = str(tmp_path / "kit")
  write_dataset(out, 5, seed=1, dataset="kit", progress=False, workers=1)
  for motion_id in formats.read_split(out, "all"):
    feats = np.load(os.path.join(out, "new_joint_vecs", motion_id + ".npy"))
    joints = np.load(os.path.join(out, "new_joints", motion_id + ".npy"))
    assert feats.shape[1] == 251 and KIT.min_motion_len <= len(feats) < 200
    assert joints.shape == (len(feats), 21, 3)
  assert stats.Normalizer.from_dir(out, dim=251).dim == 251
  assert formats.MotionDataset(out, "kit").entries("train").entries


def test_split_sizes_and_rejections():
  splits = G.split_ids(2000, 0)
  assert [len(splits[k]) for k in ("train", "val", "test")] == [1600, 100, 300]
  assert G.split_ids(2000, 0) == splits and G.split_ids(2000, 1) != splits
  with pytest.raises(ValueError):
    generate_motion(0, 0, HUMANML3D, actions=[("fly", {})])
  with pytest.raises(ValueError):
    generate_motion(0, 0, HUMANML3D, actions=[("turn", {"side": "up"})])
  with pytest.raises(ValueError):
    generate_motion(0, 0, HUMANML3D, actions=["walk"] * 4)


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=["hml", "kit"])
def test_rig_rest_pose(skeleton):
  rig = rig_for(skeleton)
  rest = rig.fk(np.zeros((1, skeleton.num_joints, 3)), np.zeros(1))
  np.testing.assert_allclose(skeleton.bone_lengths_of(rest)[0], skeleton.bone_lengths, atol=1e-9)
  np.testing.assert_allclose(F.facing_direction(rest[0], skeleton), [0, 0, 1], atol=0.01)
  np.testing.assert_allclose(F.facing_direction(rest[0], skeleton, for_ik=True), [0, 0, 1],
                             atol=0.01)
  span = lambda a, b: np.linalg.norm(rest[0, rig[a]] - rest[0, rig[b]])  # noqa: E731
  assert span("l_shoulder", "r_shoulder") > 1.5 * span("l_hip", "r_hip")
  assert rest[0, rig["l_hip"], 0] > 0 > rest[0, rig["r_hip"], 0]  # the left is +X
  assert (rest[0, list(rig.feet), 1] < rest[0, rig["l_knee"], 1]).all()


# --------------------------------------------------------------------------- captions


def test_grammar_is_covered_by_the_lexicon_and_names_parameters():
  rng = np.random.default_rng(0)
  for name, spec in A.ACTIONS.items():
    keys = list(spec.choices)
    for values in itertools.product(*(spec.choices[k][0] for k in keys)):
      params = dict(zip(keys, values))
      for count in (1, 2, 3):
        for caption in C.describe([(name, params)] * count, rng, 3):
          line = caption.to_line()
          assert formats.parse_caption_line(line) == caption
          words = set(caption.text.replace(",", "").replace(".", "").split())
          for key in ("side", "arms"):
            if params.get(key) in ("left", "right"):
              assert params[key] in words, line
          if params.get("direction") in ("left", "right", "forward_left", "forward_right"):
            side = params["direction"].split("_")[-1]
            assert any(w.startswith(side) for w in words), line  # left, leftward


def test_seconds_map_back_to_frames():
  for fps in (20.0, 12.5):
    for frame in range(400):
      assert int(G._seconds(frame, fps) * fps) == frame  # pylint: disable=protected-access


# --------------------------------------------------------------------------- learnability


def _motion(action, params, skeleton=HUMANML3D, index=0):
  return generate_motion(index, 11, skeleton, actions=[(action, params)])


def _heading(joints, skeleton):
  """Facing angle from the hips alone, radians, 0 = +Z, + = towards +X (the left)."""
  r_hip, l_hip = skeleton.face_joints[:2]
  across = joints[..., r_hip, :] - joints[..., l_hip, :]
  forward = np.cross([0.0, 1.0, 0.0], across)
  return np.arctan2(forward[..., 0], forward[..., 2])


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=["hml", "kit"])
@pytest.mark.parametrize("side,angle", [("left", 90), ("right", 90), ("left", 180), ("right", 180)])
def test_turn_direction(skeleton, side, angle):
  for index in range(3):
    joints = _motion("turn", {"side": side, "angle": angle}, skeleton, index).joints
    turned = np.degrees(np.unwrap(_heading(joints, skeleton))[-1] - _heading(joints[0], skeleton))
    assert abs(turned - (angle if side == "left" else -angle)) < 15.0, turned


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=["hml", "kit"])
@pytest.mark.parametrize("action", ["walk", "run"])
def test_travel_direction(skeleton, action):
  leg = rig_for(skeleton).leg_length
  for direction, (x, z) in A.DIRECTIONS.items():
    if direction == "up" or direction not in A.ACTIONS[action].choices["direction"][0]:
      continue
    joints = _motion(action, {"direction": direction, "count": 6}, skeleton).joints
    moved = (joints[-1, 0] - joints[0, 0]) / leg
    assert moved[0] * x + moved[2] * z > 2.0, (direction, moved)  # along the asked direction
    assert abs(moved[0] * z - moved[2] * x) < 0.5, (direction, moved)  # and not across it
    # The same travel is visible in the features the models see (first frame faces +Z).
    recovered = F.features_to_joints(F.joints_to_features(joints, skeleton))
    travel = (recovered[-1, 0] - recovered[0, 0])[[0, 2]]
    cos = (travel @ np.array([x, z])) / np.linalg.norm(travel)
    assert cos > np.cos(np.radians(15.0)), (direction, travel)


@pytest.mark.parametrize("direction", ["up", "forward", "left"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_jump_height_and_count(direction, count):
  leg = rig_for(HUMANML3D).leg_length
  motion = _motion("jump", {"direction": direction, "count": count})
  height = motion.joints[:, 0, 1]
  standing = np.median(height[:5])
  peaks, _ = find_peaks(height, height=standing + 0.1 * leg, prominence=0.1 * leg)
  assert len(peaks) == count
  assert height.max() - standing > 0.15 * leg
  action = motion.actions[0]
  assert all(action.start <= p < action.end for p in peaks)


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=["hml", "kit"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("count", [2, 4])
def test_wave_hand_and_count(skeleton, side, count):
  rig = rig_for(skeleton)
  joints = _motion("wave", {"side": side, "count": count}, skeleton).joints
  head = joints[:, rig["head"], 1].max()
  other = "right" if side == "left" else "left"
  waving, resting = rig.side(side, "wrist"), rig.side(other, "wrist")
  assert joints[:, waving, 1].max() > head
  assert joints[:, resting, 1].max() < joints[:, rig.side(side, "shoulder"), 1].min()
  up = joints[:, waving, 1] > head
  outward = (1.0 if side == "left" else -1.0) * (joints[:, waving, 0] - joints[:, 0, 0])
  inward_swings, _ = find_peaks(np.where(up, -outward, -np.inf), prominence=0.1 * rig.leg_length)
  assert len(inward_swings) == count


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("count", [1, 3])
def test_kick_leg_and_count(side, count):
  rig = rig_for(HUMANML3D)
  joints = _motion("kick", {"side": side, "count": count}).joints
  other = "right" if side == "left" else "left"
  kicking = joints[:, rig.side(side, "ankle"), 1]
  peaks, _ = find_peaks(kicking, height=0.3 * rig.leg_length, prominence=0.2 * rig.leg_length)
  assert len(peaks) == count
  assert joints[:, rig.side(other, "ankle"), 1].max() < 0.15 * rig.leg_length


@pytest.mark.parametrize("count", [1, 2, 3])
def test_squat_count(count):
  leg = rig_for(HUMANML3D).leg_length
  height = _motion("squat", {"count": count}).joints[:, 0, 1]
  dips, _ = find_peaks(-height, prominence=0.25 * leg)
  assert len(dips) == count


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=["hml", "kit"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_spin_passes_180_and_round_trips(skeleton, side):
  joints = _motion("spin", {"side": side, "count": 2}, skeleton).joints
  turned = np.degrees(np.unwrap(_heading(joints, skeleton)))
  assert abs(turned[-1] - turned[0] - (720 if side == "left" else -720)) < 40
  feats = F.joints_to_features(joints, skeleton)
  # The procedure's canonical joints: on the floor, first root at the origin, facing +Z.
  canon = F.retarget_to_uniform_skeleton(joints, skeleton)
  canon[..., 1] -= canon[..., 1].min()
  canon -= canon[0, 0] * np.array([1.0, 0.0, 1.0])
  turn = quaternion.qbetween(F.facing_direction(canon[0], skeleton), np.array([0.0, 0.0, 1.0]))
  canon = quaternion.qrot(np.broadcast_to(turn, canon.shape[:-1] + (4,)), canon)
  scale = rig_for(skeleton).leg_length
  np.testing.assert_allclose(F.features_to_joints(feats) / scale, canon[:-1] / scale, atol=1e-6)
  # Through the features the body still turns twice, in the asked direction.
  recovered = np.degrees(np.unwrap(_heading(F.features_to_joints(feats), skeleton)))
  assert abs(recovered[-1] - recovered[0] - (720 if side == "left" else -720)) < 40


def test_captions_name_the_forced_actions():
  motion = generate_motion(3, 0, HUMANML3D, actions=[
      ("walk", {"direction": "backward", "count": 5}), ("wave", {"side": "right", "count": 3}),
      ("turn", {"side": "left", "angle": 90})])
  assert [a.name for a in motion.actions] == ["walk", "wave", "turn"]
  whole = [c for c in motion.captions if c.whole_clip]
  assert len(whole) >= 3
  for caption in whole:
    words = caption.text.replace(",", "").replace(".", "").split()
    assert "five" in words and ("back" in words or "backward" in words or "backwards" in words)
    assert "right" in words and "three" in words and "left" in words
    assert caption.text.index("right") < caption.text.rindex("left")
