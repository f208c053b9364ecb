"""The evaluation protocol with stand-in systems: an oracle that answers with the ground
truth must score like the Real row, a system answering noise must not; plus the evaluator's
contrastive training, the caption tagger and the caption-retrieval baseline."""
import json

import numpy as np
import pytest

from mgpt_jax.data import formats
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.eval import caption_tags
from mgpt_jax.eval.caption_retrieval import CaptionRetriever
from mgpt_jax.eval.evaluator import store, train
from mgpt_jax.eval.protocol import report, run, tasks
from mgpt_jax.eval.protocol.samples import EvalSet

TINY = {"word_dim": 32, "text_hidden": 32, "motion_hidden": 64, "movement_hidden": 32,
        "movement_latent": 32, "embed_dim": 32}
SETTINGS = tasks.Settings(group_size=8, diversity_times=20, mm_texts=3, mm_repeats=4, mm_times=3,
                          batch_size=16)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("eval_data") / "data")
  write_dataset(out, 48, seed=5, progress=False, workers=1)
  return out


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("evaluator") / "evaluator")
  settings = train.TrainSettings(steps=240, batch_size=16, learning_rate=2e-3, log_every=40)
  result = train.train_evaluator(data_dir, out, "humanml3d", TINY, settings, progress=False)
  return out, result


class Oracle:
  """Answers every task with the ground truth it can find in the dataset."""
  frames_per_token = 4

  def __init__(self, data_dir, noise: bool = False):
    data = formats.MotionDataset(data_dir)
    self.by_caption, self.by_row, self.noise = {}, {}, noise
    self.rng = np.random.default_rng(0)
    for entry in data.entries("test").entries:
      motion = data.motion(entry)
      for caption in entry.captions:
        self.by_caption.setdefault(caption.text, motion)
      for row in motion:
        self.by_row.setdefault(row.tobytes(), entry.captions[0].text)
    self.dim = data.skeleton.feature_dim

  def _motion(self, motion):
    if self.noise:
      return self.rng.normal(size=motion.shape).astype(np.float32)
    return motion

  def text_to_motion(self, texts, seed=0):
    return [(self._motion(self.by_caption[t]), None) for t in texts]

  def motion_to_text(self, motions):
    return ["a thing" if self.noise else self.by_row[m[0].tobytes()] for m in motions]

  def predict(self, motions, seed=0):
    return [(self._motion(m), None) for m in motions]

  inbetween = predict

  def features_to_codes(self, features):
    return features  # the "codes" are the features: a lossless tokenizer

  def codes_to_features(self, codes):
    return np.stack([self._motion(c) for c in codes])


def _evaluate(system, evaluator_dir, data_dir, task, replications=2, tagger=None):
  evaluator = store.load_evaluator(evaluator_dir)
  eval_set = EvalSet(data_dir, "humanml3d", "test", progress=False)
  return run.evaluate(system, evaluator, eval_set, task, replications, 0, SETTINGS, tagger,
                      progress=False)


def test_evaluator_training_learns_matching(trained):
  out, result = trained
  losses = [m["loss"] for _, m in result["history"]]
  assert losses[-1] < 0.7 * losses[0], losses
  evaluator = store.load_evaluator(out)
  assert evaluator.config.embed_dim == 32 and evaluator.provenance["steps"] == 240
  val = result["validation"]
  assert val["r_top3"] > 3 / val["group_size"], val  # better than chance


def test_t2m_oracle_scores_like_real_and_noise_does_not(trained, data_dir):
  oracle = _evaluate(Oracle(data_dir), trained[0], data_dir, "t2m")["rows"]
  noise = _evaluate(Oracle(data_dir, noise=True), trained[0], data_dir, "t2m")["rows"]
  assert oracle["model"]["fid"]["mean"] < 0.5 * noise["model"]["fid"]["mean"]
  assert oracle["model"]["r_top3"]["mean"] > noise["model"]["r_top3"]["mean"]
  assert abs(oracle["model"]["r_top3"]["mean"] - oracle["real"]["r_top3"]["mean"]) < 0.25
  assert oracle["model"]["multimodality"]["mean"] == pytest.approx(0.0, abs=1e-5)  # one answer
  assert noise["model"]["multimodality"]["mean"] > 0.1
  for row in ("real", "model"):
    assert oracle[row]["r_top1"]["n"] == 2 and oracle[row]["r_top1"]["ci95"] >= 0


def test_completion_and_recon_of_a_perfect_system_score_zero(trained, data_dir):
  for task in ("pred", "inbetween"):
    rows = _evaluate(Oracle(data_dir), trained[0], data_dir, task)["rows"]
    assert rows["model"]["ade"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert rows["model"]["fde"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert rows["model"]["fid"]["mean"] == pytest.approx(0.0, abs=1e-3)
    noisy = _evaluate(Oracle(data_dir, noise=True), trained[0], data_dir, task, 1)["rows"]
    assert noisy["model"]["ade"]["mean"] > 0.1 and noisy["model"]["fid"]["mean"] > 1.0
  rows = _evaluate(Oracle(data_dir), trained[0], data_dir, "recon", 1)["rows"]
  assert rows["model"]["mpjpe_mm"]["mean"] == pytest.approx(0.0, abs=1e-3)
  assert rows["model"]["fid"]["mean"] == pytest.approx(0.0, abs=1e-3)


def test_m2t_oracle_captions(trained, data_dir):
  tagger = caption_tags.LexiconTagger.from_dataset(data_dir)
  record = _evaluate(Oracle(data_dir), trained[0], data_dir, "m2t", 1, tagger)
  rows = record["rows"]
  assert rows["model"]["bleu_4"]["mean"] == pytest.approx(100.0, abs=1e-3)  # a reference itself
  assert rows["model"]["cider"]["mean"] > 100
  poor = _evaluate(Oracle(data_dir, noise=True), trained[0], data_dir, "m2t", 1, tagger)["rows"]
  assert poor["model"]["length_avg"]["mean"] == 2.0 and poor["model"]["bleu_1"]["mean"] < 10
  assert any("BERTScore" in n for n in record["notes"])  # no local model: skipped, said so
  table = report.format_table("m2t", rows, 1)
  assert table.splitlines()[0].startswith("| method | R Top1 | R Top3 | MM-Dist | Len_avg")
  json.dumps(record)  # the record is JSON-ready


def test_report_interval_is_the_reference_formula():
  summary = report.summarize([1.0, 2.0, 3.0, 4.0])
  assert summary["mean"] == 2.5
  assert summary["ci95"] == pytest.approx(1.96 * np.std([1, 2, 3, 4]) / 2.0)
  assert report.summarize([float("nan")])["mean"] is None
  rows = report.aggregate([{"model": {"fid": 1.0}, "real": {}}, {"model": {"fid": 3.0}, "real": {}}])
  assert "| MotionGPT | – | – | – | 2.000±1.386 |" in report.format_table("t2m", rows, 2)


def test_lexicon_tagger_follows_the_dataset_annotations(data_dir):
  tagger = caption_tags.LexiconTagger.from_dataset(data_dir)
  tokens = tagger("The person walks to the LEFT, then jumps quickly!")
  assert tokens[:3] == ["the/DET", "person/NOUN", "walk/VERB"]
  assert "left/NOUN" in tokens or "left/ADV" in tokens
  assert tagger("zzzz") == ["zzzz/OTHER"]
  with pytest.raises(RuntimeError, match="spaCy model"):
    caption_tags.SpacyTagger("no_such_model_xyz")


def test_caption_retrieval_finds_the_entry_of_a_training_caption(data_dir):
  data = formats.MotionDataset(data_dir)
  retriever = CaptionRetriever(data, "train")
  entry = data.entries("train").entries[3]
  found, text = retriever.nearest(entry.captions[0].text)
  assert text == entry.captions[0].text or found.motion_id == entry.motion_id
  assert retriever.motions([text])[0].shape[1] == data.skeleton.feature_dim


def test_eval_set_samples_whole_token_crops_and_bad_tasks(data_dir):
  eval_set = EvalSet(data_dir, "humanml3d", "test", max_entries=5, progress=False)
  assert len(eval_set) == 5
  samples = eval_set.sample(np.random.default_rng(0))
  assert all(len(s.motion) % 4 == 0 and s.caption.text in s.references for s in samples)
  with pytest.raises(ValueError, match="unknown task"):
    run.evaluate(None, None, eval_set, "dance", 1)
  with pytest.raises(ValueError, match="tagger"):
    run.evaluate(None, None, eval_set, "m2t", 1)
