"""The training loop. Every argument comes from gin (see gin/*.gin and mgpt_jax/train.py).

train_data: an object with `batch(step, process_index, process_count) -> dict of
    numpy arrays` (this process's rows of the global batch), a pure function of
    the step so that a restarted run resumes with the same input order;
    optionally `save_assets(dir)`.
evaluator: optional callable (model, variables, step) -> dict of scalars.
init_params: optional callable () -> parameters to start from when model_dir has no
    checkpoint yet (stage 2 from an imported Flan-T5, stage 3 from stage 2).
microbatches: gradient accumulation: each step scans over this many slices of the global
    batch (the same update, less activation memory; see Trainer).
"""
from __future__ import annotations

import collections
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from tqdm import tqdm

from mgpt_jax import atomic_io
from mgpt_jax.errors import UserError
from mgpt_jax.training import run_lock
from mgpt_jax.training.checkpoints import Checkpoints
from mgpt_jax.training.partitioning import Partitioner, host_arrays
from mgpt_jax.training.trainer import Trainer, TrainState

ASSETS_DIR = "assets"
SUMMARY = "summary.json"


def _write_assets(model_dir: str, *owners) -> None:
  if jax.process_index() != 0:
    return
  directory = os.path.join(model_dir, ASSETS_DIR)
  os.makedirs(directory, exist_ok=True)
  for owner in owners:
    if hasattr(owner, "save_assets"):
      owner.save_assets(directory)


def _mean_metrics(history: list[dict]) -> dict[str, float]:
  sums = collections.defaultdict(float)
  for metrics in history:
    for name, value in metrics.items():
      sums[name] += float(value)
  return {name: total / len(history) for name, total in sums.items()}


def train(*, model, train_data, optimizer: optax.GradientTransformation,
          model_dir: str, num_steps: int, partitioner: Partitioner | None = None,
          seed: int = 0, checkpoint_every: int = 1000, keep_checkpoints: int = 3,
          log_every: int = 50, eval_every: int = 0,
          evaluator: Callable[[Any, dict, int], dict] | None = None,
          eval_at_start: bool = False, progress: bool = True,
          init_params: Callable[[], Any] | None = None,
          microbatches: int = 1,
          compiler_options: dict[str, str] | None = None) -> tuple[TrainState, dict[str, Any]]:
  """Trains `model` to `num_steps`, resuming from the latest checkpoint in model_dir.

  Returns the final state and a summary: the logged train metrics per step and
  the evaluations (of this run and of the runs it resumes). Only one run at a time may use
  model_dir.
  """
  if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
    raise UserError(f"num_steps {num_steps!r}: expected an integer >= 1")
  with run_lock.locked(model_dir):
    return _train(model, train_data, optimizer, model_dir, num_steps, partitioner, seed,
                  checkpoint_every, keep_checkpoints, log_every, eval_every, evaluator,
                  eval_at_start, progress, init_params, microbatches, compiler_options)


def _train(model, train_data, optimizer, model_dir, num_steps, partitioner, seed,
           checkpoint_every, keep_checkpoints, log_every, eval_every, evaluator, eval_at_start,
           progress, init_params, microbatches, compiler_options):
  partitioner = partitioner or Partitioner()
  first = host_arrays(train_data.batch(0, jax.process_index(), jax.process_count()))
  batch_spec = {k: jax.ShapeDtypeStruct((v.shape[0] * jax.process_count(),) + v.shape[1:], v.dtype)
                for k, v in first.items()}
  trainer = Trainer(model, optimizer, partitioner, batch_spec, seed, microbatches,
                    compiler_options)
  checkpoints = Checkpoints(model_dir, checkpoint_every, keep_checkpoints)
  state = None
  if checkpoints.latest_step() is not None:
    logging.info("restoring the latest step from %s", checkpoints.directory)
    state = checkpoints.restore_latest(trainer.abstract_with_shardings())
  if state is None:
    state = trainer.init_state(None if init_params is None else init_params())
  start = int(state.step)
  _write_assets(model_dir, model, train_data)
  writer = metric_writers.create_default_writer(model_dir, just_logging=jax.process_index() > 0)
  summary = _read_summary(model_dir, start)

  def evaluate(step):
    if evaluator is not None:
      results = evaluator(model, state.variables, step)
      writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
      summary["eval"][step] = results

  if eval_at_start and start == 0:
    evaluate(0)
  history, tick = [], time.time()
  bar = tqdm(total=num_steps, initial=start, desc="train", unit="step", file=sys.stderr,
             disable=not progress or jax.process_index() > 0)
  for step in range(start, num_steps):
    batch = partitioner.global_batch(
        train_data.batch(step, jax.process_index(), jax.process_count()))
    state, metrics = trainer.train_step(state, batch)
    history.append(metrics)
    done = step + 1
    if done % log_every == 0 or done == num_steps:
      scalars = _mean_metrics(jax.device_get(history))
      scalars["steps_per_second"] = len(history) / (time.time() - tick)
      writer.write_scalars(done, scalars)
      summary["train"][done] = scalars
      if jax.process_index() == 0:  # as it grows: a killed run's history reaches its resumption
        _write_summary(model_dir, summary)
      bar.set_postfix(loss=f"{scalars['loss']:.4f}")
      history, tick = [], time.time()
    checkpoints.save(done, state, force=done == num_steps)
    if eval_every and done % eval_every == 0 and done != num_steps:
      evaluate(done)
    bar.update(1)
  bar.close()
  if start < num_steps or not summary["eval"]:
    evaluate(num_steps)
  checkpoints.close()
  writer.flush()
  if jax.process_index() == 0 and start < num_steps:
    _write_summary(model_dir, summary)
  return state, summary


def _read_summary(model_dir: str, start: int) -> dict[str, Any]:
  """The metrics an earlier run logged up to `start`, the step this run resumes from."""
  summary: dict[str, Any] = {"train": {}, "eval": {}}
  path = os.path.join(model_dir, SUMMARY)
  if not start or not os.path.exists(path):
    return summary
  try:
    with open(path, encoding="utf-8") as f:
      earlier = json.load(f)
    for part in summary:
      summary[part] = {int(step): value for step, value in earlier.get(part, {}).items()
                       if int(step) <= start}
  except (OSError, ValueError, AttributeError) as e:
    logging.warning("%s: unreadable (%s); it will hold only this run's metrics", path, e)
  return summary


def _write_summary(model_dir: str, summary: dict) -> None:
  def plain(x):
    return {str(k): plain(v) for k, v in x.items()} if isinstance(x, dict) else float(np.asarray(x))
  ordered = {part: dict(sorted(values.items())) for part, values in summary.items()}
  atomic_io.write_text(os.path.join(model_dir, SUMMARY), json.dumps(plain(ordered), indent=1))
