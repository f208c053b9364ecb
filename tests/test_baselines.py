"""The trivial baselines every evaluation table carries, against hand-computed cases, and as
rows of the protocol's tables."""
import numpy as np
import pytest

from mgpt_jax.data import formats
from mgpt_jax.data.features import features_to_joints
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.eval import baselines
from mgpt_jax.eval.caption_retrieval import CaptionRetriever
from mgpt_jax.eval.evaluator import store, train
from mgpt_jax.eval.protocol import report, run, tasks
from mgpt_jax.eval.protocol.samples import EvalSet


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("baseline_data") / "data")
  write_dataset(out, 24, seed=11, progress=False, workers=1)
  return out


def test_hold_last_pose_repeats_the_last_shown_frame():
  motion = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)  # 10 codes of 4 frames
  (out, codes), = baselines.HoldLastPose(4).predict([motion])
  assert codes is None and out.shape == (40, 3)
  np.testing.assert_array_equal(out[:8], motion[:8])  # floor(0.2 * 10) = 2 codes shown
  np.testing.assert_array_equal(out[8:], np.repeat(motion[7:8], 32, axis=0))


def test_hold_last_pose_keeps_the_root_moving_at_its_last_velocity(data_dir):
  data = formats.MotionDataset(data_dir)
  motion = data.motion(data.entries("train").entries[0])[:80]
  (out, _), = baselines.HoldLastPose(4).predict([motion])
  root = features_to_joints(out)[:, 0]
  steps = np.diff(root[16:], axis=0)  # 4 codes shown: frames 0-15
  np.testing.assert_allclose(np.linalg.norm(steps[:, [0, 2]], axis=1),
                             np.linalg.norm(steps[0, [0, 2]]), atol=1e-5)
  pose = features_to_joints(out)[16:] - root[16:, None]
  turn = np.diff(np.unwrap(np.arctan2(steps[:, 0], steps[:, 2])))
  np.testing.assert_allclose(turn, turn[0], atol=1e-4)  # a constant turning rate
  assert np.ptp(np.linalg.norm(pose, axis=-1), axis=0).max() < 1e-5  # the pose is held


def test_linear_inbetween_fills_the_gap_on_a_straight_line():
  motion = np.zeros((32, 2), np.float32)  # 8 codes: keep 0-7 and 24-31, fill 8-23
  motion[:8] = [1.0, -1.0]
  motion[24:] = [18.0, 16.0]
  motion[8:24] = 99.0  # what the baseline must not see
  (out, _), = baselines.LinearInbetween(4).inbetween([motion])
  np.testing.assert_array_equal(out[:8], motion[:8])
  np.testing.assert_array_equal(out[24:], motion[24:])
  # from (1, -1) at frame 7 to (18, 16) at frame 24: one unit per frame on both axes
  expected = np.stack([np.arange(2, 18), np.arange(0, 16)], axis=1).astype(np.float32)
  np.testing.assert_allclose(out[8:24], expected, atol=1e-5)


def test_linear_inbetween_reproduces_a_motion_that_is_linear_in_time():
  motion = np.linspace(0, 1, 48 * 5, dtype=np.float64).reshape(48, 5)
  (out, _), = baselines.LinearInbetween(4).inbetween([motion])
  np.testing.assert_allclose(out, motion, atol=1e-12)


def test_caption_retrieval_answers_a_training_caption_with_its_motion(data_dir):
  data = formats.MotionDataset(data_dir)
  entry = data.entries("train").entries[2]
  system = baselines.CaptionRetrievalT2M(CaptionRetriever(data, "train"))
  (motion, _), = system.text_to_motion([entry.captions[0].text])
  found, _ = system.retriever.nearest(entry.captions[0].text)
  np.testing.assert_array_equal(motion, data.motion(found))
  assert entry.captions[0].text in [c.text for c in found.captions]


def test_random_motion_ignores_the_text_and_follows_the_seed(data_dir):
  data = formats.MotionDataset(data_dir)
  system = baselines.RandomMotionT2M(data, "train")
  a = system.text_to_motion(["x", "y", "z"], seed=3)
  b = system.text_to_motion(["p", "q", "r"], seed=3)
  for (m, _), (n, _) in zip(a, b):
    np.testing.assert_array_equal(m, n)
  train_lengths = {e.end - e.start for e in system.entries}
  assert all(len(m) in train_lengths for m, _ in a)


def test_pooled_descriptor_and_motion_retrieval(data_dir):
  features = np.array([[0.0, 2.0], [2.0, 2.0], [4.0, 8.0]])
  descriptor = baselines.pooled_descriptor(features, np.array([1.0, 2.0]), np.array([2.0, 1.0]))
  # normalised rows (-0.5, 0), (0.5, 0), (1.5, 6): means (0.5, 2), stds (sqrt(2/3), sqrt(8))
  np.testing.assert_allclose(descriptor, [0.5, 2.0, np.sqrt(2 / 3), np.sqrt(8.0)])
  data = formats.MotionDataset(data_dir)
  entries = data.entries("train").entries
  system = baselines.MotionRetrievalM2T(data, "train")
  captions = system.motion_to_text([data.motion(entries[4]), data.motion(entries[7])])
  assert captions == [entries[4].captions[0].text, entries[7].captions[0].text]


@pytest.fixture(scope="module")
def evaluator_dir(data_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("baseline_evaluator") / "evaluator")
  size = {"word_dim": 16, "text_hidden": 16, "motion_hidden": 32, "movement_hidden": 16,
          "movement_latent": 16, "embed_dim": 16}
  train.train_evaluator(data_dir, out, "humanml3d", size,
                        train.TrainSettings(steps=20, batch_size=8, log_every=10), progress=False)
  return out


@pytest.mark.parametrize("task,names", [("t2m", ["caption retrieval", "random motion"]),
                                        ("pred", ["hold last pose"]),
                                        ("inbetween", ["linear interpolation"])])
def test_protocol_tables_carry_the_baselines_as_rows(data_dir, evaluator_dir, task, names):
  rows = baselines.for_task(task, data_dir, "humanml3d", 4)
  assert list(rows) == names

  class Copy:  # a "model" that answers with the baseline's own answers
    frames_per_token = 4
    text_to_motion = getattr(rows[names[0]], "text_to_motion", None)
    predict = getattr(rows[names[0]], "predict", None)
    inbetween = getattr(rows[names[0]], "inbetween", None)

  settings = tasks.Settings(group_size=4, diversity_times=5, mm_texts=0, batch_size=8)
  record = run.evaluate(Copy(), store.load_evaluator(evaluator_dir),
                        EvalSet(data_dir, "humanml3d", "test", progress=False), task, 1, 0,
                        settings, progress=False, baselines=rows)
  assert record["baselines"] == names
  table = report.format_table(task, record["rows"], 1).splitlines()
  assert [line.split(" | ")[0] for line in table[2:]] == ["| Real", *[f"| {n}" for n in names],
                                                          "| MotionGPT"]
  first = record["rows"][names[0]]
  assert first["fid"]["mean"] == pytest.approx(record["rows"]["model"]["fid"]["mean"], rel=1e-5)
