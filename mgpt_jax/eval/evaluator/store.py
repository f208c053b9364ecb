"""Our on-disk evaluator format (no pickles) and the `Evaluator` that embeds texts and motions.

    <dir>/config.json        {format, version, config (EvaluatorConfig), dataset, provenance}
    <dir>/params.npz         flattened parameter paths "a/b/c" -> float32 arrays
    <dir>/words.json         the word table's words, in row order
    <dir>/word_vectors.npy   (N, word_dim) float32
    <dir>/mean.npy, std.npy  the stats the evaluator normalises features with ("meta" stats)

The directory is written under a temporary name and renamed, so it is never seen half-done.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data.formats import load_npy
from mgpt_jax.data.skeletons import get_skeleton
from mgpt_jax.data.stats import Normalizer
from mgpt_jax.eval.evaluator.networks import EvaluatorConfig, T2MEvaluator, param_shapes
from mgpt_jax.eval.evaluator.word_vectors import WordVectorizer

FORMAT = "mgpt_jax.t2m_evaluator"
VERSION = 1
FILES = ("config.json", "params.npz", "words.json", "word_vectors.npy", "mean.npy", "std.npy")
BATCH_SIZE = 32


def flatten_params(params: Mapping) -> dict[str, np.ndarray]:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(k.key for k in path): np.asarray(leaf) for path, leaf in flat}


def unflatten_params(flat: Mapping[str, np.ndarray]) -> dict:
  tree: dict = {}
  for key, value in flat.items():
    node = tree
    *parents, leaf = key.split("/")
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return tree


def check_params(flat: Mapping[str, np.ndarray], config: EvaluatorConfig, source: str) -> None:
  """Every expected parameter present, finite and of the config's shape; nothing extra."""
  expected = param_shapes(config)
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  wrong = [f"{k}: expected {expected[k]}, got {tuple(flat[k].shape)}"
           for k in sorted(set(expected) & set(flat)) if tuple(flat[k].shape) != expected[k]]
  problems = ([f"missing parameters {missing}"] if missing else []) + (
      [f"unexpected parameters {unexpected}"] if unexpected else []) + (
      [f"shape mismatches: {'; '.join(wrong)}"] if wrong else [])
  if problems:
    raise ValueError(f"{source}: parameters do not fit {config}: " + " | ".join(problems))
  for key, value in flat.items():
    if not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
      raise ValueError(f"{source}: parameter {key} must be finite floats, got {value.dtype} "
                       "with NaN/Inf or of a non-float type")


def save_evaluator(out_dir, config: EvaluatorConfig, params: Mapping, words: Sequence[str],
                   vectors: np.ndarray, normalizer: Normalizer, dataset: str,
                   provenance: Mapping[str, Any], overwrite: bool = False) -> str:
  """Writes the evaluator directory (temp dir, then rename); returns its path."""
  out_dir = os.path.abspath(os.fspath(out_dir))
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir}: already exists; pass overwrite=True to replace it")
  dataset = get_skeleton(dataset).name
  flat = {k: np.asarray(v, np.float32) for k, v in flatten_params(params).items()}
  check_params(flat, config, "save_evaluator")
  WordVectorizer(words, vectors, source="save_evaluator")  # validates the table
  if normalizer.dim != config.feature_dim:
    raise ValueError(f"save_evaluator: stats are {normalizer.dim}-d, the config expects "
                     f"{config.feature_dim}-d features")
  with atomic_io.atomic_dir(out_dir, overwrite) as tmp:
    meta = {"format": FORMAT, "version": VERSION, "config": config.to_json(), "dataset": dataset,
            "provenance": dict(provenance)}
    atomic_io.write_text(os.path.join(tmp, "config.json"), json.dumps(meta, indent=2) + "\n")
    with atomic_io.atomic_path(os.path.join(tmp, "params.npz")) as path, open(path, "wb") as f:
      np.savez(f, **flat)
    atomic_io.write_text(os.path.join(tmp, "words.json"), json.dumps(list(words)) + "\n")
    atomic_io.save_npy(os.path.join(tmp, "word_vectors.npy"), np.asarray(vectors, np.float32))
    normalizer.save(tmp, kind="meta")
  return out_dir


def _read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON: {e}") from None


def load_evaluator(directory, batch_size: int = BATCH_SIZE) -> Evaluator:
  """Reads and validates an evaluator directory written by `save_evaluator`.

  batch_size: rows per jitted call (inputs are padded to it, so each shape compiles once).
  """
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no evaluator directory there")
  for name in FILES:
    if not os.path.isfile(os.path.join(directory, name)):
      raise FileNotFoundError(f"{os.path.join(directory, name)}: missing; an evaluator directory "
                              f"holds {list(FILES)} (see mgpt_jax.eval.evaluator.importer)")
  config_path = os.path.join(directory, "config.json")
  meta = _read_json(config_path)
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise ValueError(f"{config_path}: not an evaluator config (expected \"format\": {FORMAT!r})")
  if meta.get("version") != VERSION:
    raise ValueError(f"{config_path}: format version {meta.get('version')!r}, expected {VERSION}")
  try:
    config = EvaluatorConfig.from_json(meta.get("config"))
    dataset = get_skeleton(str(meta.get("dataset"))).name
  except (ValueError, TypeError) as e:
    raise ValueError(f"{config_path}: {e}") from None
  params_path = os.path.join(directory, "params.npz")
  try:
    with np.load(params_path, allow_pickle=False) as npz:
      flat = {k: npz[k] for k in npz.files}
  except (ValueError, OSError, EOFError) as e:
    raise ValueError(f"{params_path}: not a readable .npz of arrays: {e}") from None
  check_params(flat, config, params_path)
  words_path = os.path.join(directory, "words.json")
  words = _read_json(words_path)
  if not isinstance(words, list):
    raise ValueError(f"{words_path}: expected a JSON list of words")
  vectors_path = os.path.join(directory, "word_vectors.npy")
  vectors = load_npy(vectors_path)
  vectorizer = WordVectorizer(words, vectors, source=f"{words_path} + {vectors_path}")
  if vectorizer.dim != config.word_dim:
    raise ValueError(f"{vectors_path}: {vectorizer.dim}-d vectors, the config expects "
                     f"{config.word_dim}")
  normalizer = Normalizer.from_dir(directory, "meta", dim=config.feature_dim)
  return Evaluator(config, unflatten_params(flat), vectorizer, normalizer, dataset,
                   meta.get("provenance") or {}, directory, batch_size)


class Evaluator:
  """The loaded evaluator: embeds captions and motions in fixed-size jitted batches.

  `embed_motions` takes features in raw dataset units (as new_joint_vecs stores them)
  and normalises them with the evaluator's own stats; pass normalized=True for features
  already normalised with those stats (e.g. after renorm4t2m).
  """

  def __init__(self, config: EvaluatorConfig, params, vectorizer: WordVectorizer,
               normalizer: Normalizer, dataset: str, provenance: Mapping | None = None,
               directory: str | None = None, batch_size: int = BATCH_SIZE):
    self.config = config
    self.params = jax.tree_util.tree_map(jnp.asarray, params)
    self.vectorizer = vectorizer
    self.normalizer = normalizer
    self.dataset = dataset
    self.provenance = dict(provenance or {})
    self.directory = directory
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"Evaluator: batch_size must be a positive int, got {batch_size!r}")
    self.batch_size = batch_size
    model = T2MEvaluator(config)
    self._embed_text = jax.jit(lambda p, w, pos, n: model.apply(
        {"params": p}, w, pos, n, method=T2MEvaluator.embed_text))
    self._embed_motion = jax.jit(lambda p, x, n: model.apply(
        {"params": p}, x, n, method=T2MEvaluator.embed_motion))

  def __repr__(self):
    return f"Evaluator({self.dataset}, {self.directory or 'in memory'}, {self.config})"

  def _batched(self, fn, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """fn over fixed batches of `batch_size` rows (the last one padded), so it compiles once."""
    total = len(arrays[0])
    out = []
    for start in range(0, total, self.batch_size):
      chunk = [a[start:start + self.batch_size] for a in arrays]
      real = len(chunk[0])
      if real < self.batch_size:  # pad by repeating the first row: a valid input
        fill = self.batch_size - real
        chunk = [np.concatenate([c, np.repeat(c[:1], fill, axis=0)]) for c in chunk]
      out.append(np.asarray(fn(self.params, *chunk))[:real])
    if not out:
      return np.zeros((0, self.config.embed_dim), np.float32)
    return np.concatenate(out).astype(np.float32)

  def embed_texts(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
    """Lists of "word/POS" tokens -> (N, embed_dim)."""
    word_embs, pos_onehot, lengths = self.vectorizer.encode_batch(token_lists,
                                                                  self.config.max_text_len)
    return self._batched(self._embed_text, (word_embs, pos_onehot, lengths))

  def prepare_motions(self, motions: Sequence[np.ndarray], normalized: bool = False):
    """-> (N, max_motion_len, D) normalised and zero-padded, (N,) lengths in frames.

    A motion longer than max_motion_len keeps its first max_motion_len frames; each
    length is cut down to a multiple of unit_length.
    """
    c = self.config
    if isinstance(motions, np.ndarray) and motions.ndim == 2:
      raise ValueError("embed_motions: expected a list of (T, D) motions, got one (T, D) array")
    batch = np.zeros((len(motions), c.max_motion_len, c.feature_dim), np.float32)
    lengths = np.zeros((len(motions),), np.int32)
    for i, motion in enumerate(motions):
      motion = np.asarray(motion)
      if motion.ndim != 2 or motion.shape[1] != c.feature_dim:
        raise ValueError(f"motion {i}: expected features (T, {c.feature_dim}), got {motion.shape}")
      if motion.shape[0] < c.unit_length:
        raise ValueError(f"motion {i}: {motion.shape[0]} frames; the evaluator needs at least "
                         f"unit_length={c.unit_length}")
      if not np.isfinite(motion).all():
        raise ValueError(f"motion {i}: features contain NaN or Inf")
      length = min(motion.shape[0], c.max_motion_len) // c.unit_length * c.unit_length
      rows = motion[:length].astype(np.float32)
      batch[i, :length] = rows if normalized else self.normalizer.normalize(rows)
      lengths[i] = length
    return batch, lengths

  def embed_motions(self, motions: Sequence[np.ndarray], normalized: bool = False) -> np.ndarray:
    """(T, D) feature arrays (raw units unless normalized=True) -> (N, embed_dim)."""
    batch, lengths = self.prepare_motions(motions, normalized)
    return self._batched(self._embed_motion, (batch, lengths))
