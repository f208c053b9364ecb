"""Semantic checks: they hold on ground-truth synthetic motions and fail on mismatched claims."""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest

from mgpt_jax.data import features as F
from mgpt_jax.data import formats
from mgpt_jax.data.skeletons import HUMANML3D, KIT
from mgpt_jax.data.synthetic import ACTION_NAMES, SIDECAR, generate_motion, write_dataset
from mgpt_jax.data.synthetic.actions import sample_params
from mgpt_jax.eval import semantic as S
from mgpt_jax.inference.motiongpt import T2M_PROMPT

SEED = 5
PER_ACTION = 15
EXACT = ("direction", "turn_side", "limb")  # must hold on every ground-truth motion


def _motion(name, params=None, skeleton=HUMANML3D, index=0):
  return generate_motion(index, SEED, skeleton, actions=[(name, params or {})])


def _check(motion, name=None, params=None, joints=None):
  action = motion.actions[0]
  joints = motion.joints if joints is None else joints
  return S.check(name or action.name, action.params if params is None else params, joints,
                 motion.skeleton.fps, motion.skeleton)


def _accuracy(skeleton, per_action, via_features=False):
  """action -> (fraction of motions whose claims all hold, per-attribute pass counts, n)."""
  out = {}
  for name in ACTION_NAMES:
    passed, attrs = 0, collections.Counter()
    for index in range(per_action):
      motion = _motion(name, skeleton=skeleton, index=index)
      joints = motion.joints
      if via_features:  # what generated motions go through: features -> joints
        joints = F.features_to_joints(F.joints_to_features(joints, skeleton))
      result = _check(motion, joints=joints)
      passed += all(result.values())
      attrs.update(result)
    out[name] = (passed / per_action, attrs, per_action)
  return out


def _assert_accurate(accuracy):
  for name, (fraction, attrs, n) in accuracy.items():
    assert fraction >= 0.9, (name, fraction, dict(attrs))
    for attr in EXACT:
      if attr in attrs:
        assert attrs[attr] == n, (name, attr, dict(attrs))


def test_checks_hold_on_ground_truth_humanml3d():
  _assert_accurate(_accuracy(HUMANML3D, PER_ACTION))


def test_checks_hold_on_ground_truth_kit():
  _assert_accurate(_accuracy(KIT, 5))


@pytest.mark.parametrize("skeleton", [HUMANML3D, KIT], ids=["hml", "kit"])
def test_checks_hold_through_features(skeleton):
  _assert_accurate(_accuracy(skeleton, 5, via_features=True))


def test_measure_ignores_units_position_and_facing():
  motion = _motion("walk", {"direction": "forward_left", "count": 5})
  base = S.measure(motion.joints, 20.0, "humanml3d")
  angle = np.radians(130.0)
  rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
  moved = 1000.0 * motion.joints @ rot.T + np.array([3.0, 0.5, -7.0])
  again = S.measure(moved, 20.0, HUMANML3D)
  assert base["direction"] == again["direction"] == "forward_left"
  keys = ("steps", "gait", "limb", "turn_side", "jumps")
  assert {k: base[k] for k in keys} == {k: again[k] for k in keys}


# --------------------------------------------------------------------------- mismatches

MISMATCHES = [  # (true action, true params, claimed params that contradict them, attribute)
    ("turn", {"side": "left", "angle": 90}, {"side": "right", "angle": 90}, "turn_side"),
    ("turn", {"side": "right", "angle": 180}, {"side": "right", "angle": 90}, "angle"),
    ("walk", {"direction": "forward"}, {"direction": "backward"}, "direction"),
    ("walk", {"direction": "left"}, {"direction": "right"}, "direction"),
    ("walk", {"count": 3}, {"count": 7}, "steps"),
    ("run", {"direction": "forward"}, {"direction": "forward_right"}, "direction"),
    ("wave", {"side": "left"}, {"side": "right"}, "limb"),
    ("wave", {"count": 2}, {"count": 4}, "waves"),
    ("kick", {"side": "right"}, {"side": "left"}, "limb"),
    ("kick", {"count": 1}, {"count": 3}, "kicks"),
    ("jump", {"direction": "up"}, {"direction": "forward"}, "direction"),
    ("jump", {"count": 3}, {"count": 1}, "jumps"),
    ("spin", {"side": "left", "count": 2}, {"side": "left", "count": 1}, "turns"),
    ("spin", {"side": "right"}, {"side": "left"}, "turn_side"),
    ("squat", {"count": 2}, {"count": 3}, "squats"),
    ("sit_down", {"stand_up": False}, {"stand_up": True}, "stands_up"),
    ("raise_arms", {"arms": "both"}, {"arms": "left"}, "limb"),
    ("raise_arms", {"style": "up"}, {"style": "forward"}, "arm_style"),
    ("step_back", {"count": 1}, {"count": 3}, "steps_back"),
]


@pytest.mark.parametrize("name,truth,claim,attr", MISMATCHES,
                         ids=[f"{m[0]}-{m[3]}-{i}" for i, m in enumerate(MISMATCHES)])
def test_contradicting_claims_fail(name, truth, claim, attr):
  for index in range(3):
    motion = _motion(name, truth, index=index)
    assert _check(motion)[attr], (name, motion.actions[0].params)  # the truth holds...
    result = _check(motion, params=dict(motion.actions[0].params, **claim))
    assert not result[attr], (name, truth, claim, result)  # ...its contradiction does not


@pytest.mark.parametrize("true,claimed", [("walk", "jump"), ("squat", "jump"), ("walk", "run"),
                                          ("run", "walk"), ("wave", "kick"), ("kick", "wave"),
                                          ("squat", "sit_down"), ("turn", "walk")])
def test_other_actions_claims_fail(true, claimed):
  rng = np.random.default_rng(0)
  for index in range(3):
    motion = _motion(true, index=index)
    result = _check(motion, claimed, sample_params(claimed, rng))
    assert not all(result.values()), (true, claimed, result)
  jump = _check(_motion("walk"), "jump", {"direction": "up", "count": 1, "speed": "normal"})
  assert not jump["jump"]


# --------------------------------------------------------------------------- items, scores


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("semantic") / "hml")
  write_dataset(out, 40, seed=SEED, progress=False, workers=1)
  with open(os.path.join(out, SIDECAR), encoding="utf-8") as f:
    records = {r["id"]: r for r in map(json.loads, f)}
  return out, records


def test_semantic_items_match_the_sidecar(synth):
  out, records = synth
  items = S.semantic_items(out, "all")
  assert items and items.skipped["whole-clip caption of a multi-action motion"] > 0
  singles = {i for i, r in records.items() if len(r["actions"]) == 1}
  kinds = collections.Counter()
  for item in items:
    record = records[item.motion_id]
    lines = formats.read_captions(os.path.join(out, "texts", item.motion_id + ".txt"))
    if item.motion_id in singles:
      kinds["whole"] += 1
      assert item.frames == (0, record["num_frames"])
      assert item.caption in [c.text for c in lines if c.whole_clip]
      action = record["actions"][0]
    else:
      kinds["sub"] += 1
      action = next(a for a in record["actions"] if (a["start"], a["end"]) == item.frames)
      assert any(c.text == item.caption and int(c.start * 20) == item.frames[0]
                 and int(c.end * 20) == item.frames[1] for c in lines)
    assert (item.action, item.params) == (action["name"], action["params"])
  assert kinds["whole"] == len(singles) and kinds["sub"] > 0
  again = S.semantic_items(out, "all", rng=1)
  assert [(i.motion_id, i.frames) for i in again] == [(i.motion_id, i.frames) for i in items]
  assert S.semantic_items(out, "all", rng=1) == again
  assert len(S.semantic_items(out, "all", all_captions=True)) > len(items)


def test_score_and_table(synth):
  out, _ = synth
  items = S.semantic_items(out, "all", rng=0)
  truth = [S.item_joints(out, item) for item in items]
  scores = S.score(items, truth, 20.0, "humanml3d")
  assert scores["items"] == len(items) and scores["mean_accuracy"] >= 0.9
  assert len(scores["passed"]) == len(items)
  assert np.mean(scores["passed"]) == pytest.approx(scores["accuracy"])
  for name, row in scores["actions"].items():
    assert row["accuracy"] >= 0.9 and set(row["attributes"]) == set(
        S.attributes(name, next(i.params for i in items if i.action == name)))
  shuffled = S.score(items, truth[1:] + truth[:1], 20.0, "humanml3d")
  assert shuffled["mean_accuracy"] < scores["mean_accuracy"]
  broken = [np.full_like(truth[0], np.nan)] + truth[1:]
  broken_scores = S.score(items, broken, 20.0, "humanml3d")
  assert broken_scores["unmeasurable"] == 1 and not broken_scores["passed"][0]
  table = S.format_table({"generated": shuffled, "ground truth": scores}, per_attribute=True)
  assert "ground truth" in table and "mean over actions" in table and "  direction" in table
  assert S.format_table(scores).splitlines()[0].split() == ["action", "n", "accuracy"]


def test_errors_name_the_problem(tmp_path):
  joints = _motion("walk").joints
  with pytest.raises(ValueError, match="unknown action 'fly'"):
    S.attributes("fly", {})
  with pytest.raises(ValueError, match="kit skeleton expects 21"):
    S.measure(joints, 12.5, "kit")
  with pytest.raises(ValueError, match=r"expected \(T >= 2, J, 3\)"):
    S.measure(joints[:, :, :2], 20.0)
  with pytest.raises(ValueError, match="one motion per item"):
    S.score([S.SemanticItem("0", "walks", "walk", {}, (0, 5))], [], 20.0)
  with pytest.raises(formats.MotionDataError, match="synthetic ground truth not found"):
    S.semantic_items(str(tmp_path))


def test_bundle_is_scored_sampled_greedy_and_beam(synth, tiny_system, monkeypatch):
  """`mgpt eval --task semantic` scores one sample (seeded per chunk), the greedy answer (seed
  None) and, when asked, beam search beside the baselines, and the ground truth passes its own
  checks."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from mgpt_jax.eval import semantic_eval  # pylint: disable=g-import-not-at-top
  out, _ = synth
  items = S.semantic_items

  def short_captions(*args, **kwargs):  # the tiny bundle's encoder takes 48 character pieces
    found = items(*args, **kwargs)
    found[:] = [dataclasses.replace(item, caption=item.caption[:20]) for item in found]
    return found

  system = tiny_system[3]
  asked = []
  answer = system.text_to_motion

  def recorded(texts, seed=0, num_beams=None, **kwargs):
    asked.append((seed, num_beams))
    return answer(texts, seed=seed, num_beams=num_beams, **kwargs)

  monkeypatch.setattr(S, "semantic_items", short_captions)
  monkeypatch.setattr(system, "text_to_motion", recorded)
  record = semantic_eval.evaluate_bundle("unused", out, "all", seed=5, system=system,
                                         batch_size=4, progress=False, beam=True)
  n = record["items"]
  beams = system.num_beams
  assert n > 4 and asked == [x for i in range(0, n, 4)
                             for x in ((5 + i, None), (None, None), (0, beams))]
  scores = record["scores"]
  assert list(scores) == ["generated", "greedy", "beam search", "caption retrieval",
                          "tokenizer round trip", "ground truth"]
  assert all(scores[name]["items"] == n for name in scores)
  assert scores["ground truth"]["mean_accuracy"] >= 0.9
  assert "beam search" in record["table"].splitlines()[0]
  for name, pair in record["paired_with_caption_retrieval"].items():  # caption by caption
    ours, theirs = scores[name]["passed"], scores["caption retrieval"]["passed"]
    assert len(ours) == n and pair["only_a"] - pair["only_b"] == sum(ours) - sum(theirs)
    assert f"{name} vs caption retrieval: {pair['only_a']} captions" in record["table"]
  assert set(record["paired_with_caption_retrieval"]) == {"generated", "greedy", "beam search"}
  asked.clear()
  record = semantic_eval.evaluate_bundle("unused", out, "all", seed=5, system=system,
                                         batch_size=4, progress=False)
  assert "beam search" not in record["scores"] and {b for _, b in asked} == {None}


def test_beam_search_answer_is_the_bundles_beam(tiny_system):
  """text_to_motion(num_beams=...) decodes the bundle's beam search, whatever the seed."""
  system = tiny_system[3]
  beams = system.num_beams
  texts = ["a person walks", "a person jumps"]
  ids = system.generate([T2M_PROMPT.format(t) for t in texts], 20, num_beams=beams)
  got = system.text_to_motion(texts, seed=3, max_length=20, num_beams=beams)
  for (_, codes), row in zip(got, ids):
    np.testing.assert_array_equal(codes, system.answer_codes(row))
  with pytest.raises(ValueError, match=f"exported with {beams} beams"):
    system.text_to_motion(texts, max_length=20, num_beams=beams + 1)
