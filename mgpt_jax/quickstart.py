"""`mgpt quickstart`: the whole pipeline on the embedded synthetic default.

Each step leaves its output under OUT and is skipped (or resumed, for training)
when that output is already there, so an interrupted run continues where it
stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np

from tqdm import tqdm

from mgpt_jax import atomic_io
from mgpt_jax.data import formats, validate

STEPS = 13
# Prompts in the synthetic captions' grammar, one per kind of action claim.
DEMO_PROMPTS = ("a person walks forward for four steps.", "someone turns to the left.",
                "a person jumps up twice.", "a man waves his right hand three times.")
# Small GRUs: the synthetic captions have ~150 words and the motions 11 actions.
EVALUATOR_SIZE = {"word_dim": 64, "text_hidden": 64, "motion_hidden": 128, "movement_hidden": 64,
                  "movement_latent": 64, "embed_dim": 64}
EVAL_TASKS = ("t2m", "m2t", "pred", "inbetween", "recon")
# The language-model recipe of stages 2 and 3 (model size, rates, lengths, mixture weights) is
# a gin file like any other run's; the quickstart only sets data, run directory and steps.
LM_RECIPE = "gin/recipes/synthetic_mini.gin"


@dataclasses.dataclass(frozen=True)
class Preset:
  num_motions: int
  tokenizer_steps: int
  pretrain_steps: int
  instruct_steps: int
  evaluator_steps: int
  replications: int
  mm_texts: int
  mm_repeats: int
  eval_entries: int | None  # an even spread over the length-sorted test entries; None: all
  tokenizer_recipe: str = "gin/recipes/synthetic_tokenizer.gin"
  semantic_beam: bool = False  # beam search as a third answer of the semantic checks


PRESETS = {
    # About 15 minutes on 2 CPU cores (README: per-step times).
    "default": Preset(num_motions=1500, tokenizer_steps=2000, pretrain_steps=300,
                      instruct_steps=300, evaluator_steps=1500, replications=3, mm_texts=10,
                      mm_repeats=10, eval_entries=256),
    # More data and longer training: under 90 minutes on 2 CPU cores (README: results of the
    # full preset). With 3,000 motions stage 3's validation loss rose after 150 steps.
    "full": Preset(num_motions=6000, tokenizer_steps=3000, pretrain_steps=2500,
                   instruct_steps=2500, evaluator_steps=3000, replications=5, mm_texts=20,
                   mm_repeats=10, eval_entries=1024,
                   tokenizer_recipe="gin/recipes/synthetic_tokenizer_full.gin", semantic_beam=True),
}


class _Clock:
  """Wall time of each step, for the summary and the report."""

  def __init__(self):
    self.start = time.time()
    self.times: list[tuple[str, float]] = []
    self._open: tuple[str, float] | None = None

  def step(self, number: int, name: str) -> None:
    self.close()
    print(f"\n== {number}/{STEPS} {name}", flush=True)
    self._open = (f"{number}. {name}", time.time())

  def close(self) -> None:
    if self._open is not None:
      self.times.append((self._open[0], time.time() - self._open[1]))
      self._open = None

  def table(self) -> str:
    lines = ["| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in self.times]
    lines.append(f"| total | {time.time() - self.start:.0f} |")
    return "\n".join(lines)


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
  summary = _train([f"--gin_file=gin/runner/{stage}.gin", f"--gin_file={LM_RECIPE}",
                    f"--gin.DATA_DIR='{data_dir}'", f"--gin.MODEL_DIR='{model_dir}'",
                    f"--gin.TRAIN_STEPS={steps}", *extra])
  losses = [m["loss"] for _, m in sorted(summary["train"].items(), key=lambda kv: int(kv[0]))]
  if losses:
    print(f"train loss {losses[0]:.3f} -> {losses[-1]:.3f} over {steps} steps")
  for step, results in sorted(summary["eval"].items()):
    plain = {k: v for k, v in results.items() if "/" not in k}
    print(f"validation at step {step}: {_metrics(plain)}")
    sensitivity = {k.split("/", 1)[1]: v for k, v in results.items()
                   if k.startswith("prompt_sensitivity/")}
    if sensitivity:
      print("  prompt sensitivity (nats per target token; > 0: the answer depends on the "
            f"prompt): {_metrics(sensitivity)}")


def run(out: str, preset: str = "default", seed: int = 0, **overrides) -> int:
  """The main job. `overrides` replace fields of the preset (num_motions=60, ...)."""
  if preset not in PRESETS:
    raise ValueError(f"--preset {preset!r}: expected one of {sorted(PRESETS)}")
  settings = dataclasses.replace(PRESETS[preset],
                                 **{k: v for k, v in overrides.items() if v is not None})
  clock = _Clock()
  data_dir = os.path.join(out, "data")
  tfds_dir = os.path.join(out, "tfds")
  tokenizer_dir = os.path.join(out, "tokenizer")
  print(f"preset {preset}: {settings}")

  clock.step(1, "synthetic dataset (HumanML3D layout)")
  if os.path.exists(os.path.join(data_dir, "all.txt")):
    print(f"found {data_dir}, keeping it")
  else:
    from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=g-import-not-at-top
    report = write_dataset(data_dir, settings.num_motions, seed)
    print(f"{report.num_motions} motions, {report.num_frames} frames in {report.seconds:.1f} s")

  clock.step(2, "validate")
  report = validate.validate_dataset(
      data_dir, "humanml3d", progress=lambda ids: tqdm(ids, desc="validate", file=sys.stderr))
  print(validate.format_report(report, report.errors))
  if not report.ok:
    return 1

  clock.step(3, "tensorflow-datasets build")
  from mgpt_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  builder = tfds_builder.build(data_dir, dataset="synthetic", tfds_data_dir=tfds_dir, quiet=True)
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} examples")

  clock.step(4, f"stage 1: motion tokenizer ({settings.tokenizer_recipe})")
  summary = _train([
      f"--gin_file={settings.tokenizer_recipe}", f"--gin.MODEL_DIR='{tokenizer_dir}'",
      f"--gin.DATA_DIR='{data_dir}'", f"--gin.TRAIN_STEPS={settings.tokenizer_steps}",
      "--gin.runner.train.eval_at_start=True"])
  for step, results in sorted(summary["eval"].items()):
    print(f"reconstruction at step {step}: {_metrics(results)}")

  clock.step(5, "motion tokens for every entry")
  from mgpt_jax.inference.tokenize_dataset import tokenize_dataset  # pylint: disable=g-import-not-at-top
  tokens = tokenize_dataset(tokenizer_dir, data_dir)
  print(tokens.summary())

  pretrain_dir, instruct_dir = os.path.join(out, "pretrain"), os.path.join(out, "instruct")
  clock.step(6, f"stage 2: motion-language pre-training (gin/runner/pretrain.gin + {LM_RECIPE})")
  _lm_stage("pretrain", data_dir, pretrain_dir, settings.pretrain_steps)
  clock.step(7, f"stage 3: instruction tuning (gin/runner/instruct.gin + {LM_RECIPE})")
  _lm_stage("instruct", data_dir, instruct_dir, settings.instruct_steps,
            f"--gin.INITIAL_CHECKPOINT_PATH='{pretrain_dir}'")

  evaluator_dir, bundle_dir = os.path.join(out, "evaluator"), os.path.join(out, "bundle")
  clock.step(8, "evaluator: T2M text-motion matching nets, contrastive training (tiny GRUs)")
  _evaluator(data_dir, evaluator_dir, os.path.join(out, "evaluator_logs"),
             settings.evaluator_steps, seed)

  clock.step(9, "export the inference bundle (stage 1 + stage 3)")
  if os.path.exists(os.path.join(bundle_dir, "manifest.json")):
    print(f"found {bundle_dir}, keeping it")
  else:
    from mgpt_jax.inference.bundle import export_bundle  # pylint: disable=g-import-not-at-top
    export_bundle(tokenizer_dir, instruct_dir, bundle_dir)
    print(f"wrote {bundle_dir}")
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  system = MotionGPT.load(bundle_dir)

  samples_dir = os.path.join(out, "samples")
  clock.step(10, "generate and render four prompts beside ground truth; caption a test motion")
  demos = _demo(system, data_dir, samples_dir, seed)

  eval_dir = os.path.join(out, "eval")
  clock.step(11, f"evaluation protocol with baselines, {settings.replications} replications "
             "(mean ± 95 % interval)")
  from mgpt_jax.eval.protocol import bundle_eval, tasks  # pylint: disable=g-import-not-at-top
  eval_settings = tasks.Settings(mm_texts=settings.mm_texts, mm_repeats=settings.mm_repeats,
                                 mm_times=min(10, settings.mm_repeats))
  tables = []
  for task in EVAL_TASKS:
    record = _saved(os.path.join(eval_dir, f"eval_{task}.json"))
    if record is None:
      record = bundle_eval.evaluate_bundle(
          bundle_dir, data_dir, evaluator_dir, task, settings.replications, seed, eval_settings,
          max_entries=settings.eval_entries, out_json=os.path.join(eval_dir, f"eval_{task}.json"),
          system=system)
    print(f"\n{task}:\n{record['table']}")
    for note in record["notes"]:
      print(f"  note: {note}")
    tables.append((TABLE_HEADINGS[task], record["table"]))

  clock.step(12, "semantic checks: does the motion do what the caption says?")
  from mgpt_jax.eval import semantic_eval  # pylint: disable=g-import-not-at-top
  semantic_json = os.path.join(eval_dir, "semantic.json")
  try:
    record = _saved(semantic_json) or semantic_eval.evaluate_bundle(
        bundle_dir, data_dir, seed=seed, out_json=semantic_json, system=system,
        beam=settings.semantic_beam)
    print(record["table"])
    tables.append(("Semantic accuracy (single-action test captions)", record["table"]))
  except formats.MotionDataError as e:  # a tiny test split may hold no single-action caption
    print(f"semantic checks skipped: {e}")

  clock.step(13, "report")
  report_path = _report(out, preset, settings, demos, tables, clock)
  clock.close()

  print(f"\nquickstart finished in {time.time() - clock.start:.0f} s.")
  print(f"  report      {report_path}")
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
  print(f"\nwall time per step:\n{clock.table()}")
  return 0


TABLE_HEADINGS = {"t2m": "Text-to-motion", "m2t": "Motion-to-text",
                  "pred": "Motion prediction", "inbetween": "Motion in-between",
                  "recon": "Tokenizer reconstruction"}


def _report(out: str, preset: str, settings: Preset, demos, tables, clock: _Clock) -> str:
  from mgpt_jax.eval import html_report  # pylint: disable=g-import-not-at-top
  report = html_report.Report(f"mgpt quickstart ({preset})")
  report.notes.append(f"Settings: {settings}. Output directory: {os.path.abspath(out)}.")
  report.add_curves("stage 1: tokenizer", os.path.join(out, "tokenizer"),
                    ("loss", "loss_feature", "eval/loss_feature"))
  for stage in ("pretrain", "instruct"):
    report.add_curves(f"{stage}: loss", os.path.join(out, stage), ("loss", "eval/loss"))
    report.add_curves(f"{stage}: prompt sensitivity (nats/token)", os.path.join(out, stage),
                      tuple(f"eval/prompt_sensitivity/{t}" for t in ("t2m", "m2t", "pred",
                                                                      "inbetween")))
  report.add_curves("evaluator: contrastive loss", os.path.join(out, "evaluator_logs"),
                    ("loss",))
  report.animations = demos
  report.tables = tables + [("Wall time per step", clock.table())]
  return report.write(os.path.join(out, "report.html"))


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


def _demo(system, data_dir: str, samples_dir: str, seed: int) -> list:
  """Each demo prompt's motion beside the training motion whose caption matches it best;
  returns the report's rows of animations."""
  from mgpt_jax.data.features import features_to_joints  # pylint: disable=g-import-not-at-top
  from mgpt_jax.eval.caption_retrieval import CaptionRetriever  # pylint: disable=g-import-not-at-top
  from mgpt_jax.eval.html_report import Animation  # pylint: disable=g-import-not-at-top
  from mgpt_jax.inference.render import render_motion  # pylint: disable=g-import-not-at-top
  os.makedirs(samples_dir, exist_ok=True)
  fps = float(system.config["fps"])
  data = formats.MotionDataset(data_dir)
  retriever = CaptionRetriever(data, "train")
  rows = []
  for k, ((features, codes), prompt) in enumerate(
      zip(system.text_to_motion(DEMO_PROMPTS, seed=seed), DEMO_PROMPTS)):
    base = os.path.join(samples_dir, f"prompt_{k}")
    atomic_io.save_npy(base + ".npy", features.astype(np.float32))
    render_motion(features_to_joints(features), base + ".gif", fps=fps, title=prompt)
    entry, caption = retriever.nearest(prompt)
    truth = os.path.join(samples_dir, f"prompt_{k}_ground_truth.gif")
    render_motion(features_to_joints(data.motion(entry)), truth, fps=fps,
                  title=f"ground truth: {caption}")
    rows.append([Animation(f"generated: {prompt}", base + ".gif"),
                 Animation(f"ground truth ({entry.name}): {caption}", truth)])
    print(f"{prompt!r}: {len(codes)} tokens, {len(features)} frames -> {base}.npy, {base}.gif "
          f"(ground truth {truth})")
  entry = data.entries("test", on_error="skip").entries[0]
  caption = system.motion_to_text([data.motion(entry)])[0]
  print(f"caption of test motion {entry.name}: {caption!r}")
  print(f"  ground truth: {entry.captions[0].text!r}")
  test_gif = os.path.join(samples_dir, "test_motion.gif")
  render_motion(features_to_joints(data.motion(entry)), test_gif, fps=fps,
                title=f"model's caption: {caption}")
  rows.append([Animation(f"test motion {entry.name}; model's caption: {caption!r}; "
                         f"ground truth: {entry.captions[0].text!r}", test_gif)])
  return rows
