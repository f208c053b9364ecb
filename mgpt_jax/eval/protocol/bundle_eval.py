"""`mgpt eval`: one task's protocol for an exported bundle, printed and saved as JSON."""
from __future__ import annotations

import json
import os

from mgpt_jax import atomic_io
from mgpt_jax.eval import baselines as eval_baselines
from mgpt_jax.eval import caption_tags
from mgpt_jax.eval.evaluator import store
from mgpt_jax.eval.protocol import report, run, tasks
from mgpt_jax.eval.protocol.samples import EvalSet
from mgpt_jax.eval.reconstruction import UNIT_TO_MM

_DATASET_SKELETON = {"humanml3d": "humanml3d", "kit_ml": "kit", "kit": "kit",
                     "synthetic": "humanml3d"}


def evaluate_bundle(bundle_dir: str, data_dir: str, evaluator_dir: str, task: str,
                    replications: int = 20, seed: int = 0,
                    settings: tasks.Settings = tasks.Settings(), split: str = "test",
                    spacy_model: str | None = None, max_entries: int | None = None,
                    out_json: str | None = None, system=None, progress: bool = True,
                    baselines: bool = True) -> dict:
  """Evaluates `task` beside its baselines (`eval.baselines`, from the training split);
  returns the record (with its Markdown table) and writes it as JSON."""
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  system = system or MotionGPT.load(bundle_dir)
  evaluator = store.load_evaluator(evaluator_dir)
  skeleton = _DATASET_SKELETON.get(str(system.config.get("dataset", "humanml3d")), "humanml3d")
  if evaluator.config.feature_dim != system.mean.shape[0]:
    raise ValueError(f"evaluator {evaluator_dir} reads {evaluator.config.feature_dim}-d features, "
                     f"bundle {bundle_dir} makes {system.mean.shape[0]}-d ones")
  eval_set = EvalSet(data_dir, skeleton, split, max_entries=max_entries, progress=progress)
  tagger, tagger_name = (caption_tags.make_tagger(data_dir, spacy_model) if task == "m2t"
                         else (None, None))
  rows = (eval_baselines.for_task(task, data_dir, skeleton, system.frames_per_token)
          if baselines else {})
  record = run.evaluate(system, evaluator, eval_set, task, replications, seed, settings, tagger,
                        to_mm=UNIT_TO_MM[eval_set.data.skeleton.name], progress=progress,
                        baselines=rows)
  record.update({"bundle": os.path.abspath(bundle_dir), "data": os.path.abspath(data_dir),
                 "evaluator": os.path.abspath(evaluator_dir), "caption_tagger": tagger_name})
  record["table"] = report.format_table(task, record["rows"], replications)
  if out_json:
    atomic_io.write_text(out_json, json.dumps(record, indent=1, default=_plain) + "\n")
  return record


def _plain(value):
  """numpy scalars and arrays in the JSON record."""
  return value.tolist() if hasattr(value, "tolist") else str(value)
