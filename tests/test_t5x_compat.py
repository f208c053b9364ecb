"""T5X's whole loop on our module, where t5x is installed: Flan-T5 init -> stage 2 -> stage 3 ->
`t5x.infer` (beam search) -> `t5x.eval` (multi-sample decoding, the tasks' metrics).

t5x is not on PyPI; see the README for installing it. Each run is a subprocess under a timeout,
because a t5x run that fails can hang instead of exiting.
"""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("t5x")

from mgpt_jax import cli  # noqa: E402
from mgpt_jax.data.synthetic import write_dataset  # noqa: E402
from mgpt_jax.data.synthetic.stand_in_tokens import write_stand_in_tokens  # noqa: E402
from mgpt_jax.interop import t5x_checkpoint  # noqa: E402
from mgpt_jax.training import optimizers  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 900
SPM_PIECES = 300
EVAL_TASKS = ("t2m", "m2t", "pred", "inbetween")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A small synthetic dataset with stand-in stage-1 tokens (T5X needs only their shapes)."""
  root = str(tmp_path_factory.mktemp("t5x") / "data")
  write_dataset(root, 40, seed=5, progress=False)
  write_stand_in_tokens(root)
  return root


@pytest.fixture(scope="module")
def flan_t5(tmp_path_factory, data_dir):
  """A random transformers T5 of the tiny size (Flan-T5's layout) and its T5X import."""
  transformers = pytest.importorskip("transformers")
  import torch
  from mgpt_jax.lm.vocab import get_vocabulary
  from tasks import vocabulary
  rows = -(-get_vocabulary(vocabulary.dataset_sentencepiece(data_dir, SPM_PIECES),
                           515).vocab_size // 128) * 128
  torch.manual_seed(0)
  hf_dir = str(tmp_path_factory.mktemp("flan_t5_tiny"))
  transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=448, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
      num_decoder_layers=2, feed_forward_proj="gated-gelu",
      tie_word_embeddings=False)).save_pretrained(hf_dir)
  out = str(tmp_path_factory.mktemp("flan_t5x"))
  args = ["import-hf", hf_dir, out, "--format", "t5x", "--vocab-size", str(rows)]
  assert cli.main(args) == 0
  assert cli.main(args) == 2  # no silent overwrite
  return os.path.join(out, "checkpoint_0")


# Batch sizes are multiples of 8: under pytest the runs see conftest's 8 CPU devices.
def t5x_run(script, gin_file, data_dir, *bindings):
  command = [sys.executable, "-m", f"t5x.{script}", f"--gin_file={gin_file}",
             "--gin_file=gin/tasks/synthetic.gin", "--gin_file=gin/models/t5_tiny.gin",
             "--gin_file=gin/hardware/t5x_cpu.gin", f"--gin.DATA_DIR=\"{data_dir}\"",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 96, 'targets': 64}",
             f"--gin.vocabulary.dataset_sentencepiece.vocab_size={SPM_PIECES}", *bindings,
             "--alsologtostderr"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-5000:]
  return result.stderr


def t5x_train(gin_file, data_dir, model_dir, *bindings):
  return t5x_run("train", gin_file, data_dir, f"--gin.MODEL_DIR=\"{model_dir}\"",
                 "--gin.TRAIN_STEPS=3", "--gin.BATCH_SIZE=8",
                 "--gin.utils.SaveCheckpointConfig.period=3", "--gin.train.eval_period=3",
                 "--gin.train.eval_steps=1", *bindings)


def _train_metric(log, name):
  found = re.findall(rf"collection=train .*?\b{name}=([0-9.e-]+)", log)
  assert found, log[-3000:]
  return float(found[-1])


def test_flan_t5_to_stage_2_to_stage_3_to_infer_and_eval(data_dir, flan_t5, tmp_path):
  pretrain_dir, instruct_dir = tmp_path / "pretrain", tmp_path / "instruct"
  # Stage 2 from the imported Flan-T5.
  log = t5x_train("gin/pretrain.gin", data_dir, pretrain_dir, "--gin.WARMUP_STEPS=2",
                  f"--gin.INITIAL_CHECKPOINT_PATH=\"{flan_t5}\"")
  assert (pretrain_dir / "checkpoint_3").is_dir()
  # A random transformers T5 has large logits: its loss is far above log(vocabulary).
  assert 0 < _train_metric(log, "cross_ent_loss") < 100
  # The logged rates are those optax applied in the 3 updates (warm-up over 2 steps, then
  # cosine): their mean and the last one.
  applied = [float(optimizers.warmup_cosine(2e-4, 2, 3)(step)) for step in range(3)]
  assert _train_metric(log, "learning_rate") == pytest.approx(np.mean(applied), rel=1e-4)
  assert _train_metric(log, "learning_rate/current") == pytest.approx(applied[-1], rel=1e-4)
  # Teacher-forced evaluation ran on every pre-training task's validation split.
  for task in ("t2m", "m2t", "pred", "inbetween", "text_span", "motion_span"):
    assert f"collection=training_eval/mgpt_synthetic_{task} " in log
  # Every parameter came from the import: three steps at lr <= 2e-4 move them by < 1e-3.
  imported = t5x_checkpoint.read_t5x_params(flan_t5)
  trained = t5x_checkpoint.read_t5x_params(pretrain_dir / "checkpoint_3")
  import jax
  gaps = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), imported, trained)
  assert max(jax.tree.leaves(gaps)) < 1e-3
  assert max(jax.tree.leaves(gaps)) > 0  # and they trained

  # Stage 3 from stage 2, with inference evaluation (the tasks' metrics) at its last step.
  log = t5x_train("gin/instruct.gin", data_dir, instruct_dir,
                  f"--gin.INITIAL_CHECKPOINT_PATH=\"{pretrain_dir / 'checkpoint_3'}\"",
                  "--gin.train.train_eval_dataset_cfg=None", "--gin.EVALUATOR_NUM_EXAMPLES=4",
                  "--gin.infer_eval/utils.DatasetConfig.batch_size=8")
  assert f"Restoring checkpoint from {pretrain_dir / 'checkpoint_3'}" in log
  assert (instruct_dir / "checkpoint_6").is_dir()  # three steps on top of stage 2's three
  assert _train_metric(log, "learning_rate") == pytest.approx(1e-4)
  assert "mgpt_synthetic_eval_m2t/bleu_4" in log and "mgpt_synthetic_eval_t2m/token_accuracy" in log

  # t5x.infer: two beams (the cache is expanded along the batch).
  checkpoint = instruct_dir / "checkpoint_6"
  infer_dir = tmp_path / "infer"
  t5x_run("infer", "gin/infer.gin", data_dir, f"--gin.CHECKPOINT_PATH=\"{checkpoint}\"",
          f"--gin.INFER_OUTPUT_DIR=\"{infer_dir}\"", "--gin.NUM_DECODES=2",
          "--gin.utils.DatasetConfig.batch_size=8")
  for task in EVAL_TASKS:
    path = infer_dir / f"mgpt_synthetic_eval_{task}-predict.jsonl-00000-of-00001"
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f]
    assert rows and all("prediction" in row for row in rows), rows[:1]

  # t5x.eval: two samples per example (temperature sampling), scored by the tasks' metrics.
  eval_dir = tmp_path / "eval"
  log = t5x_run("eval", "gin/eval.gin", data_dir, f"--gin.CHECKPOINT_PATH=\"{checkpoint}\"",
                f"--gin.EVAL_OUTPUT_DIR=\"{eval_dir}\"", "--gin.NUM_DECODES=2",
                "--gin.DECODE_FN=@decoding.temperature_sample",
                "--gin.utils.DatasetConfig.batch_size=8")
  for task, names in (("t2m", ("motion_span_valid", "token_accuracy")),
                      ("pred", ("motion_span_valid", "token_accuracy")),
                      ("inbetween", ("motion_span_valid", "token_accuracy")),
                      ("m2t", ("bleu_1", "bleu_4", "rouge_l", "cider"))):
    for name in names:
      assert re.search(rf"mgpt_synthetic_eval_{task}/{name} at step 6: [0-9.]+", log), name
  assert glob.glob(str(eval_dir / "inference_eval" / "mgpt_synthetic_eval_m2t-metrics.jsonl"))
