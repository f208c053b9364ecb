"""`mgpt quickstart`: the whole pipeline on the embedded synthetic default.

Each step leaves its output under OUT and is skipped (or resumed, for training)
when that output is already there, so an interrupted run continues where it
stopped.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

from mgpt_jax.data import validate

STEPS = 7
# Tiny language-model stages: inputs hold a prompt plus a motion span of up to 51 ids.
LM_SETTINGS = ["--gin_file=gin/tasks/synthetic.gin", "--gin_file=gin/models/t5_tiny.gin",
               "--gin.BATCH_SIZE=32", "--gin.LEARNING_RATE=2e-3", "--gin.WARMUP_STEPS=20",
               "--gin.TASK_FEATURE_LENGTHS={'inputs': 128, 'targets': 64}",
               "--gin.runner.train.checkpoint_every=100", "--gin.runner.train.log_every=25",
               "--gin.seqio_data.SeqioLossEvaluator.num_batches=4"]


def _step(number: int, name: str):
  print(f"\n== {number}/{STEPS} {name}", flush=True)


def _metrics(results: dict) -> str:
  return ", ".join(f"{k} {v:.3f}" for k, v in sorted(results.items()))


def _train(args: list[str]) -> dict:
  import gin  # pylint: disable=g-import-not-at-top
  from mgpt_jax import train  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    return train.run(args)[1]
  finally:
    gin.clear_config()


def _lm_stage(stage: str, data_dir: str, model_dir: str, steps: int, *extra: str) -> None:
  if os.path.isdir(os.path.join(model_dir, "checkpoints", str(steps))):
    print(f"found a finished run in {model_dir}, keeping it")
    return
  summary = _train([f"--gin_file=gin/runner/{stage}.gin", *LM_SETTINGS,
                    f"--gin.DATA_DIR='{data_dir}'", f"--gin.MODEL_DIR='{model_dir}'",
                    f"--gin.TRAIN_STEPS={steps}", *extra])
  losses = [m["loss"] for _, m in sorted(summary["train"].items(), key=lambda kv: int(kv[0]))]
  if losses:
    print(f"train loss {losses[0]:.3f} -> {losses[-1]:.3f} over {steps} steps")
  for step, results in sorted(summary["eval"].items()):
    print(f"validation at step {step}: {_metrics(results)}")


def run(out: str, num_motions: int = 400, seed: int = 0, tokenizer_steps: int = 1000,
        lm_steps: int = 300) -> int:
  start = time.time()
  data_dir = os.path.join(out, "data")
  tfds_dir = os.path.join(out, "tfds")
  tokenizer_dir = os.path.join(out, "tokenizer")

  _step(1, "synthetic dataset (HumanML3D layout)")
  if os.path.exists(os.path.join(data_dir, "all.txt")):
    print(f"found {data_dir}, keeping it")
  else:
    from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=g-import-not-at-top
    report = write_dataset(data_dir, num_motions, seed)
    print(f"{report.num_motions} motions, {report.num_frames} frames in {report.seconds:.1f} s")

  _step(2, "validate")
  report = validate.validate_dataset(
      data_dir, "humanml3d", progress=lambda ids: tqdm(ids, desc="validate", file=sys.stderr))
  print(validate.format_report(report, report.errors))
  if not report.ok:
    return 1

  _step(3, "tensorflow-datasets build")
  from mgpt_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  builder = tfds_builder.build(data_dir, dataset="synthetic", tfds_data_dir=tfds_dir)
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} examples")

  _step(4, "stage 1: motion tokenizer (gin/tokenizer_tiny.gin)")
  summary = _train([
      "--gin_file=tokenizer_tiny.gin", f"--gin.MODEL_DIR='{tokenizer_dir}'",
      f"--gin.DATA_DIR='{data_dir}'", f"--gin.TRAIN_STEPS={tokenizer_steps}",
      "--gin.runner.train.eval_at_start=True"])
  for step, results in sorted(summary["eval"].items()):
    print(f"reconstruction at step {step}: {_metrics(results)}")

  _step(5, "motion tokens for every entry")
  from mgpt_jax.inference.tokenize_dataset import tokenize_dataset  # pylint: disable=g-import-not-at-top
  tokens = tokenize_dataset(tokenizer_dir, data_dir)
  print(tokens.summary())

  pretrain_dir, instruct_dir = os.path.join(out, "pretrain"), os.path.join(out, "instruct")
  _step(6, "stage 2: motion-language pre-training (gin/runner/pretrain.gin, tiny T5)")
  _lm_stage("pretrain", data_dir, pretrain_dir, lm_steps)
  _step(7, "stage 3: instruction tuning over 18 sub-tasks (gin/runner/instruct.gin)")
  _lm_stage("instruct", data_dir, instruct_dir, lm_steps,
            f"--gin.INITIAL_CHECKPOINT_PATH='{pretrain_dir}'")

  print(f"\nquickstart finished in {time.time() - start:.0f} s. Outputs:")
  print(f"  dataset     {os.path.abspath(data_dir)}")
  print(f"  tfds        {os.path.abspath(builder.data_dir)}")
  print(f"  tokenizer   {os.path.abspath(tokenizer_dir)}  (TensorBoard logs, checkpoints)")
  print(f"  tokens      {os.path.abspath(tokens.out_dir)}")
  print(f"  stage 2     {os.path.abspath(pretrain_dir)}")
  print(f"  stage 3     {os.path.abspath(instruct_dir)}")
  print("Export, generation and evaluation join this job as they land.")
  return 0
