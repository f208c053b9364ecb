"""Stages 2 and 3 under T5X's own trainer (`python -m t5x.train`), where t5x is installed.

t5x is not on PyPI; see the README for installing it. Each run is a subprocess under a timeout,
because a t5x.train that fails can hang instead of exiting.
"""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("t5x")

from mgpt_jax.data.synthetic import write_dataset  # noqa: E402
from mgpt_jax.data.synthetic.stand_in_tokens import write_stand_in_tokens  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A small synthetic dataset with stand-in stage-1 tokens (T5X needs only their shapes)."""
  root = str(tmp_path_factory.mktemp("t5x") / "data")
  write_dataset(root, 40, seed=5, progress=False)
  write_stand_in_tokens(root)
  return root


def t5x_train(gin_file, data_dir, model_dir, *bindings):
  command = [sys.executable, "-m", "t5x.train", f"--gin_file={gin_file}",
             "--gin_file=gin/tasks/synthetic.gin", "--gin_file=gin/models/t5_tiny.gin",
             "--gin_file=gin/hardware/t5x_cpu.gin", f"--gin.DATA_DIR=\"{data_dir}\"",
             f"--gin.MODEL_DIR=\"{model_dir}\"", "--gin.TRAIN_STEPS=3", "--gin.BATCH_SIZE=8",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 96, 'targets': 64}",
             "--gin.vocabulary.dataset_sentencepiece.vocab_size=300",
             "--gin.utils.SaveCheckpointConfig.period=3", "--gin.train.eval_period=3",
             "--gin.train.eval_steps=1", *bindings, "--alsologtostderr"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-5000:]
  return result.stderr


def _train_loss(log):
  found = re.findall(r"collection=train .*?cross_ent_loss=([0-9.]+)", log)
  assert found, log[-3000:]
  return float(found[-1])


def test_pretrain_then_instruct_on_t5x(data_dir, tmp_path):
  pretrain_dir, instruct_dir = tmp_path / "pretrain", tmp_path / "instruct"
  log = t5x_train("gin/pretrain.gin", data_dir, pretrain_dir)
  assert (pretrain_dir / "checkpoint_3").is_dir()
  assert 0 < _train_loss(log) < 10
  # Teacher-forced evaluation ran on every pre-training task's validation split.
  for task in ("t2m", "m2t", "pred", "inbetween", "text_span", "motion_span"):
    assert f"collection=training_eval/mgpt_synthetic_{task} " in log

  log = t5x_train("gin/instruct.gin", data_dir, instruct_dir,
                  f"--gin.INITIAL_CHECKPOINT_PATH=\"{pretrain_dir / 'checkpoint_3'}\"",
                  "--gin.train.train_eval_dataset_cfg=None")
  assert f"Restoring checkpoint from {pretrain_dir / 'checkpoint_3'}" in log
  assert (instruct_dir / "checkpoint_6").is_dir()  # three steps on top of stage 2's three
