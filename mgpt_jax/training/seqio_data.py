"""seqio mixtures as the runner's input: per-host shards, feature conversion, resumable batches.

Each process reads its own shard (seqio.ShardInfo(process_index, process_count)) and yields
its rows of the global batch, which the partitioner joins into global arrays. The stream is
a pure function of (seed, shard): a restarted run skips to its step, so it sees what an
uninterrupted run would have seen.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
import seqio
import tensorflow as tf

from mgpt_jax import atomic_io


def _converter(pack: bool) -> seqio.FeatureConverter:
  return seqio.EncDecFeatureConverter(pack=pack)


def _dataset(name: str, task_feature_lengths: dict, split: str, shuffle: bool, seed: int,
             shard: seqio.ShardInfo | None, pack: bool, num_epochs: int | None,
             use_cached: bool) -> tf.data.Dataset:
  provider = seqio.get_mixture_or_task(name)
  ds = provider.get_dataset(task_feature_lengths, split=split, use_cached=use_cached,
                            shuffle=shuffle, num_epochs=num_epochs, shard_info=shard, seed=seed)
  return _converter(pack)(ds, task_feature_lengths)


class SeqioBatches:
  """The runner's `train_data`: `batch(step, process_index, process_count)` from a mixture."""

  def __init__(self, mixture_or_task_name: str, task_feature_lengths: dict[str, int],
               batch_size: int, split: str = "train", seed: int = 0, pack: bool = False,
               use_cached: bool = False):
    self.name = mixture_or_task_name
    self.task_feature_lengths = dict(task_feature_lengths)
    self.batch_size, self.split, self.seed, self.pack = batch_size, split, seed, pack
    self.use_cached = use_cached
    self._stream = None  # ((process_index, process_count), next step, iterator)
    self._last = None  # ((process_index, process_count), step, batch)

  @staticmethod
  def batch_shapes(task_feature_lengths: dict[str, int], batch_size: int,
                   pack: bool = False) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each feature of a global batch, from the settings alone (no data)."""
    lengths = _converter(pack).get_model_feature_lengths(dict(task_feature_lengths))
    return {name: ((batch_size, length), np.dtype(np.int32)) for name, length in lengths.items()}

  def local_batch_size(self, process_count: int) -> int:
    if self.batch_size % process_count:
      raise ValueError(f"batch_size {self.batch_size} is not divisible by the {process_count} "
                       "processes: each host feeds an equal share of the global batch")
    return self.batch_size // process_count

  def dataset(self, process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
    """This process's endless stream of converted local batches."""
    shard = seqio.ShardInfo(process_index, process_count) if process_count > 1 else None
    ds = _dataset(self.name, self.task_feature_lengths, self.split, True, self.seed, shard,
                  self.pack, None, self.use_cached)
    return ds.batch(self.local_batch_size(process_count), drop_remainder=True)

  def batch(self, step: int, process_index: int, process_count: int) -> dict[str, np.ndarray]:
    key = (process_index, process_count)
    if self._last is not None and self._last[:2] == (key, step):
      return self._last[2]  # asked twice (the runner reads step 0 once for shapes)
    stream = self._stream
    if stream is None or stream[:2] != (key, step):
      # A fresh start or a jump (resume): rebuild and skip to `step`.
      iterator = self.dataset(process_index, process_count).skip(step).prefetch(2)
      stream = (key, step, iter(iterator.as_numpy_iterator()))
    batch = next(stream[2])
    self._stream = (key, step + 1, stream[2])
    self._last = (key, step, batch)
    return batch

  def save_assets(self, directory: str) -> None:
    """The vocabulary's SentencePiece model beside the run, for export and inference."""
    vocab = seqio.get_mixture_or_task(self.name).output_features["targets"].vocabulary
    model = getattr(vocab, "sentencepiece_model", None)
    if model is None or jax.process_index() != 0:
      return
    target = os.path.join(directory, "sentencepiece.model")
    with atomic_io.atomic_path(target) as tmp:
      tf.io.gfile.copy(model, tmp, overwrite=True)
    atomic_io.write_text(os.path.join(directory, "vocabulary.json"),
                         f'{{"sentencepiece_model": "sentencepiece.model", '
                         f'"num_motion_tokens": {int(vocab.num_motion_tokens)}}}\n')


class SeqioLossEvaluator:
  """Teacher-forced loss and token accuracy on a split of a mixture (no dropout), and the
  prompt sensitivity of chosen tasks.

  Prompt sensitivity of a task is the target loss (nats per target token) with each example's
  inputs swapped for those of the next example of the batch, minus the loss with its own
  inputs. A model that reads its prompt scores clearly above zero; one that answers every
  prompt alike scores zero, whatever its loss.
  """

  def __init__(self, mixture_or_task_name: str, task_feature_lengths: dict[str, int],
               batch_size: int, split: str = "validation", num_batches: int = 8, seed: int = 0,
               sensitivity_tasks: Sequence[str] = ()):
    self.name, self.split, self.seed = mixture_or_task_name, split, seed
    self.task_feature_lengths = dict(task_feature_lengths)
    self.batch_size, self.num_batches = batch_size, num_batches
    self.sensitivity_tasks = tuple(sensitivity_tasks)
    self._batches = {}
    self._loss = jax.jit(lambda model, params, batch: model.loss_fn(params, {}, batch, None)[1][0],
                         static_argnums=0)

  def batches(self, name: str | None = None) -> list[dict]:
    name = name or self.name
    if name not in self._batches:  # the same examples at every evaluation
      ds = _dataset(name, self.task_feature_lengths, self.split, True, self.seed, None,
                    False, None, False)
      ds = ds.batch(self.batch_size, drop_remainder=True).take(self.num_batches)
      self._batches[name] = list(ds.as_numpy_iterator())
    return self._batches[name]

  def _mean(self, model, params, batches) -> dict[str, float]:
    totals, weights = {"loss": 0.0, "accuracy": 0.0}, 0.0
    for batch in batches:
      metrics = jax.device_get(self._loss(model, params, batch))
      w = float(metrics["target_tokens"])
      for name in totals:
        totals[name] += float(metrics[name]) * w
      weights += w
    return {name: value / max(weights, 1.0) for name, value in totals.items()}

  def __call__(self, model, variables: dict, step: int) -> dict[str, float]:
    del step
    params = variables["params"]
    results = self._mean(model, params, self.batches())
    for label, name in _labels(self.sensitivity_tasks).items():
      own = self._mean(model, params, self.batches(name))
      other = self._mean(model, params, [_swap_inputs(b) for b in self.batches(name)])
      results[f"loss/{label}"] = own["loss"]
      results[f"prompt_sensitivity/{label}"] = other["loss"] - own["loss"]
    return results


def _swap_inputs(batch: dict) -> dict:
  """Each row's encoder features replaced by the next row's (unpacked batches)."""
  return {k: np.roll(v, 1, axis=0) if k.startswith("encoder_") else v for k, v in batch.items()}


def _labels(names: Sequence[str]) -> dict[str, str]:
  """Short labels: the task names less their common prefix ('mgpt_D_eval_t2m' -> 't2m')."""
  if len(names) < 2:
    return {n: n for n in names}
  prefix = os.path.commonprefix(list(names))
  prefix = prefix[:prefix.rfind("_") + 1]
  return {n[len(prefix):]: n for n in names}
