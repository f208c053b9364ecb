"""`mgpt quickstart`: the whole pipeline on the embedded synthetic default.

Each step leaves its output under OUT and is skipped (or resumed, for training)
when that output is already there, so an interrupted run continues where it
stopped.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from tqdm import tqdm

from mgpt_jax import atomic_io
from mgpt_jax.data import formats, validate

STEPS = 12
# Prompts in the synthetic captions' grammar, one per kind of action claim.
DEMO_PROMPTS = ("a person walks forward for four steps.", "someone turns to the left.",
                "a person jumps up twice.", "a man waves his right hand three times.")
# Small GRUs: the synthetic captions have ~150 words and the motions 11 actions.
EVALUATOR_SIZE = {"word_dim": 64, "text_hidden": 64, "motion_hidden": 128, "movement_hidden": 64,
                  "movement_latent": 64, "embed_dim": 64}
EVAL_TASKS = ("t2m", "m2t", "pred", "inbetween", "recon")
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
        lm_steps: int = 300, evaluator_steps: int = 1500, replications: int = 3,
        mm_texts: int = 10, mm_repeats: int = 10) -> int:
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

  evaluator_dir, bundle_dir = os.path.join(out, "evaluator"), os.path.join(out, "bundle")
  _step(8, "evaluator: T2M text-motion matching nets, contrastive training (tiny GRUs)")
  _evaluator(data_dir, evaluator_dir, os.path.join(out, "evaluator_logs"), evaluator_steps, seed)

  _step(9, "export the inference bundle (stage 1 + stage 3)")
  if os.path.exists(os.path.join(bundle_dir, "manifest.json")):
    print(f"found {bundle_dir}, keeping it")
  else:
    from mgpt_jax.inference.bundle import export_bundle  # pylint: disable=g-import-not-at-top
    export_bundle(tokenizer_dir, instruct_dir, bundle_dir)
    print(f"wrote {bundle_dir}")
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  system = MotionGPT.load(bundle_dir)

  samples_dir = os.path.join(out, "samples")
  _step(10, "generate and render four prompts; caption a test motion")
  _demo(system, data_dir, samples_dir, seed)

  eval_dir = os.path.join(out, "eval")
  _step(11, f"evaluation protocol, {replications} replications (mean ± 95 % interval)")
  from mgpt_jax.eval.protocol import bundle_eval, tasks  # pylint: disable=g-import-not-at-top
  settings = tasks.Settings(mm_texts=mm_texts, mm_repeats=mm_repeats,
                            mm_times=min(10, mm_repeats))
  for task in EVAL_TASKS:
    record = _saved(os.path.join(eval_dir, f"eval_{task}.json"))
    if record is None:
      record = bundle_eval.evaluate_bundle(
          bundle_dir, data_dir, evaluator_dir, task, replications, seed, settings,
          out_json=os.path.join(eval_dir, f"eval_{task}.json"), system=system)
    print(f"\n{task}:\n{record['table']}")
    for note in record["notes"]:
      print(f"  note: {note}")

  _step(12, "semantic checks: does the motion do what the caption says?")
  from mgpt_jax.eval import semantic_eval  # pylint: disable=g-import-not-at-top
  semantic_json = os.path.join(eval_dir, "semantic.json")
  try:
    record = _saved(semantic_json) or semantic_eval.evaluate_bundle(
        bundle_dir, data_dir, seed=seed, out_json=semantic_json, system=system)
    print(record["table"])
  except formats.MotionDataError as e:  # a tiny test split may hold no single-action caption
    print(f"semantic checks skipped: {e}")

  print(f"\nquickstart finished in {time.time() - start:.0f} s. Outputs:")
  print(f"  dataset     {os.path.abspath(data_dir)}")
  print(f"  tfds        {os.path.abspath(builder.data_dir)}")
  print(f"  tokenizer   {os.path.abspath(tokenizer_dir)}  (TensorBoard logs, checkpoints)")
  print(f"  tokens      {os.path.abspath(tokens.out_dir)}")
  print(f"  stage 2     {os.path.abspath(pretrain_dir)}")
  print(f"  stage 3     {os.path.abspath(instruct_dir)}")
  print(f"  evaluator   {os.path.abspath(evaluator_dir)}")
  print(f"  bundle      {os.path.abspath(bundle_dir)}")
  print(f"  samples     {os.path.abspath(samples_dir)}  (.npy features, .gif renders)")
  print(f"  evaluation  {os.path.abspath(eval_dir)}  (eval_<task>.json, semantic.json)")
  return 0


def _saved(path: str) -> dict | None:
  """A finished step's JSON record, so that a resumed run prints it instead of recomputing."""
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    print(f"found {path}, keeping it")
    return json.load(f)


def _evaluator(data_dir: str, evaluator_dir: str, logdir: str, steps: int, seed: int) -> None:
  if os.path.exists(os.path.join(evaluator_dir, "config.json")):
    print(f"found {evaluator_dir}, keeping it")
    return
  from mgpt_jax.eval.evaluator import train  # pylint: disable=g-import-not-at-top
  settings = train.TrainSettings(steps=steps, learning_rate=1e-3, seed=seed)
  result = train.train_evaluator(data_dir, evaluator_dir, "humanml3d", EVALUATOR_SIZE, settings,
                                 logdir=logdir)
  first, last = result["history"][0][1]["loss"], result["history"][-1][1]["loss"]
  print(f"contrastive loss {first:.3f} -> {last:.3f} over {steps} steps "
        f"({result['seconds']:.0f} s)")
  print(f"ground-truth matching on val: {_metrics(result['validation'])}")


def _demo(system, data_dir: str, samples_dir: str, seed: int) -> None:
  from mgpt_jax.data.features import features_to_joints  # pylint: disable=g-import-not-at-top
  from mgpt_jax.inference.render import render_motion  # pylint: disable=g-import-not-at-top
  os.makedirs(samples_dir, exist_ok=True)
  fps = float(system.config["fps"])
  for k, ((features, codes), prompt) in enumerate(
      zip(system.text_to_motion(DEMO_PROMPTS, seed=seed), DEMO_PROMPTS)):
    base = os.path.join(samples_dir, f"prompt_{k}")
    atomic_io.save_npy(base + ".npy", features.astype(np.float32))
    render_motion(features_to_joints(features), base + ".gif", fps=fps)
    print(f"{prompt!r}: {len(codes)} tokens, {len(features)} frames -> {base}.npy, {base}.gif")
  data = formats.MotionDataset(data_dir)
  entry = data.entries("test", on_error="skip").entries[0]
  caption = system.motion_to_text([data.motion(entry)])[0]
  print(f"caption of test motion {entry.name}: {caption!r}")
  print(f"  ground truth: {entry.captions[0].text!r}")
