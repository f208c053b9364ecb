"""`evaluate`: replications of one task's protocol over a system and an evaluator."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from tqdm import tqdm

from mgpt_jax.eval.protocol import report, tasks
from mgpt_jax.eval.protocol.samples import EvalSet


def evaluate(system, evaluator, eval_set: EvalSet, task: str, replications: int = 20,
             seed: int = 0, settings: tasks.Settings = tasks.Settings(), tagger=None,
             to_mm: float = 1000.0, progress: bool = True,
             baselines: dict | None = None) -> dict:
  """Runs `replications` independent replications; returns the JSON-ready record.

  `baselines` ({row name: system}) answer the same samples of every replication; each
  becomes a row of its own (MultiModality is left out for them)."""
  if task not in tasks.RUNNERS:
    raise ValueError(f"unknown task {task!r}: expected one of {tasks.TASKS}")
  if replications < 1:
    raise ValueError(f"replications must be >= 1, got {replications}")
  if task == "m2t" and tagger is None:
    raise ValueError("m2t needs a tagger for the generated captions (eval.caption_tags)")
  per_replication = len(eval_set)
  if task == "t2m" and settings.mm_texts:
    per_replication += min(settings.mm_texts, len(eval_set)) * settings.mm_repeats
  bar = tqdm(total=replications * per_replication, desc=f"eval {task}", unit="item",
             disable=not progress)
  start, results, notes, examples = time.time(), [], set(), None
  for r in range(replications):
    rng = np.random.default_rng([seed, r])
    samples, twins = eval_set.sample(rng), eval_set.sample(rng)
    ctx = tasks.Context(system, evaluator, settings, rng, progress=bar.update, tagger=tagger,
                        to_mm=to_mm, notes=notes)
    out = tasks.RUNNERS[task](ctx, samples, twins)
    replication_examples = out.pop("examples", None)  # m2t's captions, kept from the first
    examples = examples or replication_examples
    for k, (name, baseline) in enumerate((baselines or {}).items()):
      base_ctx = tasks.Context(baseline, evaluator, dataclasses.replace(settings, mm_texts=0),
                               np.random.default_rng([seed, r, k + 1]), tagger=tagger,
                               to_mm=to_mm, notes=notes)
      answer = tasks.RUNNERS[task](base_ctx, samples, twins)
      out[name] = answer["model"]
    results.append(out)
    bar.set_postfix({k: f"{v:.3f}" for k, v in list(out["model"].items())[:3]})
  bar.close()
  return {
      "task": task, "replications": replications, "seed": seed,
      "settings": dataclasses.asdict(settings), "test_set": eval_set.summary(),
      "rows": report.aggregate(results), "baselines": list(baselines or {}),
      "per_replication": results,
      "notes": sorted(notes), "examples": examples, "seconds": time.time() - start,
  }
