"""Stages 1 -> tokens -> 2 -> 3 on the synthetic data with the tiny configs and the built-in runner."""
import contextlib
import json
import os

import gin
import jax
import numpy as np
import pytest
import seqio

from mgpt_jax import train as train_main
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.inference.tokenize_dataset import tokenize_dataset
from mgpt_jax.training import seqio_data
import tasks  # noqa: F401  (registers the tasks; gin files import it too)

LM_BINDINGS = [
    "--gin_file=gin/tasks/synthetic.gin", "--gin_file=gin/models/t5_tiny.gin",
    "--gin.TRAIN_STEPS=40", "--gin.BATCH_SIZE=16", "--gin.LEARNING_RATE=3e-3",
    "--gin.WARMUP_STEPS=5", "--gin.DROPOUT_RATE=0.0",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 96, 'targets': 64}",
    "--gin.vocabulary.dataset_sentencepiece.vocab_size=300",
    "--gin.seqio_data.SeqioLossEvaluator.num_batches=2",
    "--gin.runner.train.checkpoint_every=20", "--gin.runner.train.log_every=10",
    "--gin.runner.train.eval_every=0", "--gin.runner.train.progress=False",
]


def _run(args):
  gin.clear_config()
  try:
    return train_main.run(args)
  finally:
    gin.clear_config()


def _losses(summary):
  return [m["loss"] for _, m in sorted(summary["train"].items(), key=lambda kv: int(kv[0]))]


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
  """Stage 1 (a short tiny tokenizer run) and its TOKENS/ for every entry."""
  root = tmp_path_factory.mktemp("stages")
  data_dir = str(root / "data")
  write_dataset(data_dir, 60, seed=3, progress=False)
  tokenizer_dir = str(root / "tokenizer")
  _run(["--gin_file=tokenizer_tiny.gin", f"--gin.MODEL_DIR='{tokenizer_dir}'",
        f"--gin.DATA_DIR='{data_dir}'", "--gin.TRAIN_STEPS=30", "--gin.BATCH_SIZE=16",
        "--gin.runner.train.evaluator=None", "--gin.runner.train.progress=False"])
  tokenize_dataset(tokenizer_dir, data_dir, progress=False)
  return data_dir


@pytest.fixture(scope="module")
def stage2(tokens_dir, tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("pretrain"))
  state, summary = _run(["--gin_file=gin/runner/pretrain.gin", *LM_BINDINGS,
                         f"--gin.DATA_DIR='{tokens_dir}'", f"--gin.MODEL_DIR='{model_dir}'"])
  return model_dir, state, summary


def test_stage2_learns_and_saves_its_vocabulary(stage2):
  model_dir, state, summary = stage2
  losses = _losses(summary)
  assert int(state.step) == 40 and len(losses) == 4
  assert losses[-1] < 0.8 * losses[0], losses
  assert np.isfinite(summary["eval"][40]["loss"])
  with open(os.path.join(model_dir, "assets", "vocabulary.json")) as f:
    assert json.load(f)["num_motion_tokens"] == 515
  assert os.path.exists(os.path.join(model_dir, "assets", "sentencepiece.model"))


def test_stage3_starts_from_stage2_then_resumes(stage2, tokens_dir, tmp_path):
  pretrain_dir, pretrained, pretrain_summary = stage2
  args = ["--gin_file=gin/runner/instruct.gin", *LM_BINDINGS, f"--gin.DATA_DIR='{tokens_dir}'",
          f"--gin.MODEL_DIR='{tmp_path}'", f"--gin.INITIAL_CHECKPOINT_PATH='{pretrain_dir}'",
          "--gin.runner.train.evaluator=None"]
  _, summary = _run([*args, "--gin.TRAIN_STEPS=20"])
  state, resumed = _run([*args, "--gin.TRAIN_STEPS=40"])  # restores step 20, goes on to 40
  assert int(state.step) == 40
  # The summary keeps the whole history across the resume.
  assert sorted(int(k) for k in resumed["train"]) == [10, 20, 30, 40]
  assert _losses(resumed)[:2] == _losses(summary)
  losses, pretrain_losses = _losses(resumed), _losses(pretrain_summary)
  # Stage 3 begins with stage 2's weights: its first steps are far below a fresh model's.
  assert losses[0] < pretrain_losses[0] - 1.0, (losses, pretrain_losses)
  assert losses[-1] < losses[0], losses
  first_param = jax.tree.leaves(jax.device_get(state.params))[0]
  assert not np.array_equal(first_param, jax.tree.leaves(jax.device_get(pretrained.params))[0])


@contextlib.contextmanager
def _synthetic_tasks(tokens_dir):
  """The synthetic tasks read tokens_dir, with its small SentencePiece vocabulary."""
  gin.clear_config()
  gin.parse_config([f"sources.locations.synthetic = '{tokens_dir}'",
                    "vocabulary.settings.sentencepiece_model = @vocabulary.dataset_sentencepiece()",
                    f"vocabulary.dataset_sentencepiece.data_dir = '{tokens_dir}'",
                    "vocabulary.dataset_sentencepiece.vocab_size = 300"])
  try:
    yield
  finally:
    gin.clear_config()


def test_batches_are_a_function_of_the_step(tokens_dir):
  with _synthetic_tasks(tokens_dir):
    lengths = {"inputs": 96, "targets": 64}

    # Two tasks keep the five pipeline builds below quick; a mixture still samples between them.
    if "test_two_tasks" not in seqio.MixtureRegistry.names():
      seqio.MixtureRegistry.add("test_two_tasks", ["mgpt_synthetic_instruct_t2m_caption",
                                                   "mgpt_synthetic_motion_span"], default_rate=1.0)

    def batches(pack, steps):
      data = seqio_data.SeqioBatches("test_two_tasks", lengths, 8, pack=pack)
      return data, [data.batch(s, 0, 1) for s in steps]

    data, straight = batches(False, range(4))
    jumped = data.batch(2, 0, 1)  # a resume rebuilds the stream and skips to the step
    for key in straight[2]:
      np.testing.assert_array_equal(jumped[key], straight[2][key])
    assert not np.array_equal(straight[0]["encoder_input_tokens"],
                              straight[1]["encoder_input_tokens"])
    # Each of two hosts reads half of the global batch, from its own shard.
    halves = [data.batch(0, i, 2) for i in range(2)]
    assert all(h["encoder_input_tokens"].shape == (4, 96) for h in halves)
    with pytest.raises(ValueError, match="not divisible"):
      data.batch(0, 0, 3)
    _, packed = batches(True, [0])
    assert {"encoder_segment_ids", "decoder_positions"} <= set(packed[0])
    assert packed[0]["encoder_segment_ids"].max() > 1  # several examples share a row


def test_trained_system_exports_and_runs_all_four_tasks(stage2, tokens_dir, tmp_path):
  from mgpt_jax.inference.bundle import export_bundle
  from mgpt_jax.inference.motiongpt import MotionGPT
  tokenizer_dir = os.path.join(os.path.dirname(tokens_dir), "tokenizer")
  bundle = export_bundle(tokenizer_dir, stage2[0], str(tmp_path / "bundle"),
                         max_input_length=96, max_decode_length=64)
  system = MotionGPT.load(bundle)
  (features, codes), = system.text_to_motion(["a person walks forward"], seed=0)
  assert features.shape == (4 * len(codes), 263) and np.isfinite(features).all()
  motion = np.load(os.path.join(tokens_dir, "TOKENS", sorted(os.listdir(
      os.path.join(tokens_dir, "TOKENS")))[0]))[0]
  caption, = system.motion_to_text([motion])
  assert isinstance(caption, str)
  (_, predicted), = system.predict([motion], seed=0)
  np.testing.assert_array_equal(predicted[:len(motion) // 5], motion[:len(motion) // 5])
  (filled, _), = system.inbetween([motion], seed=0)
  assert np.isfinite(filled).all()


@pytest.fixture(scope="module")
def paired(tokens_dir, tmp_path_factory):
  """The mini model trained briefly on the supervised pairs alone (t2m, m2t, prediction)."""
  model_dir = str(tmp_path_factory.mktemp("paired"))
  _run(["--gin_file=gin/runner/pretrain.gin", *LM_BINDINGS, "--gin_file=gin/models/t5_mini.gin",
        "--gin.TRAIN_STEPS=150", "--gin.registry.pretrain_rates.text_span=0.0",
        "--gin.registry.pretrain_rates.motion_span=0.0",
        "--gin.registry.pretrain_rates.inbetween=False", "--gin.runner.train.evaluator=None",
        "--gin.runner.train.checkpoint_every=150",
        f"--gin.DATA_DIR='{tokens_dir}'", f"--gin.MODEL_DIR='{model_dir}'"])
  return model_dir


def test_prompt_sensitivity_is_positive_after_training_and_near_zero_before(paired, tokens_dir):
  from mgpt_jax.inference import lm_checkpoint
  from mgpt_jax.models.t5_model import EncoderDecoderModel
  module, params = lm_checkpoint.load_lm(paired)
  model = EncoderDecoderModel(module.config)
  names = [f"mgpt_synthetic_eval_{t}" for t in ("t2m", "m2t")]
  with _synthetic_tasks(tokens_dir):
    evaluator = seqio_data.SeqioLossEvaluator(
        "mgpt_synthetic_eval_t2m", {"inputs": 96, "targets": 64}, 16, split="train",
        num_batches=2, sensitivity_tasks=names)
    trained = evaluator(model, {"params": params}, 150)
    fresh = model.init_variables(jax.random.PRNGKey(1), evaluator.batches()[0])["params"]
    untrained = evaluator(model, {"params": fresh}, 0)
  for task in ("t2m", "m2t"):
    assert trained[f"prompt_sensitivity/{task}"] > 0.2, trained
    assert abs(untrained[f"prompt_sensitivity/{task}"]) < 0.05, untrained
  assert trained["loss/t2m"] < untrained["loss/t2m"]

  # Different captions, different greedy motions (a prompt-blind model answers all alike).
  from mgpt_jax.lm import decoding
  prompts = evaluator.batches(names[0])[0]["encoder_input_tokens"]
  answers = decoding.decode(module, params, prompts, max_decode_length=12).tokens
  assert len({tuple(a) for a in np.asarray(answers)}) >= 3, answers  # a blind model: 1
