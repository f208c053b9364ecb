"""Trains the T2M matching evaluator in JAX on any dataset in the HumanML3D/KIT layout.

The objective is T2M's: a contrastive loss on Euclidean distances, pulling each caption
towards its own motion and pushing it at least `margin` away from another motion of the
batch (the batch rolled by a random shift in [1, B-1]; the original draws the shift from
[0, B-2], so a batch can pair every text with its own motion as a "negative").
T2M pre-trains the movement encoder as an autoencoder and freezes it; here all three
encoders train together from scratch, which needs no second stage on small data.

Word vectors: the released evaluators read 300-d GloVe; without GloVe (the synthetic data)
each word of the training captions gets a fixed random vector, so words stay distinct and
the text encoder learns the rest.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from mgpt_jax.data import crops, formats
from mgpt_jax.data.stats import Normalizer
from mgpt_jax.eval.evaluator import networks, store
from mgpt_jax.eval.evaluator.word_vectors import WordVectorizer
from mgpt_jax.eval.metrics import retrieval

SPECIAL_WORDS = ("unk", "sos", "eos")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  steps: int = 3000
  batch_size: int = 32
  learning_rate: float = 1e-4  # T2M's Adam rate; small models on small data like 1e-3
  margin: float = 10.0
  seed: int = 0
  log_every: int = 100


def dataset_word_table(entries, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
  """Fixed random vectors for every word of the captions (plus unk/sos/eos)."""
  words = sorted({t.rpartition("/")[0] for e in entries for c in e.captions for t in c.tokens})
  words = list(SPECIAL_WORDS) + [w for w in words if w not in SPECIAL_WORDS]
  vectors = np.random.default_rng([seed, 0x57]).normal(size=(len(words), dim)) / np.sqrt(dim)
  return words, vectors.astype(np.float32)


def contrastive_loss(text_emb, motion_emb, shift, margin: float):
  """T2M's loss: d(text, own motion)^2 + max(0, margin - d(text, other motion))^2."""
  positive = jnp.sum((text_emb - motion_emb)**2, -1)
  other = jnp.roll(motion_emb, shift, axis=0)
  negative = jnp.maximum(margin - jnp.sqrt(jnp.sum((text_emb - other)**2, -1) + 1e-8), 0.0)**2
  return jnp.mean(positive) + jnp.mean(negative), (jnp.mean(positive), jnp.mean(negative))


class _Batches:
  """Random (caption, crop) pairs of the training entries, padded to the evaluator's sizes."""

  def __init__(self, data, entries, normalizer, vectorizer, config, batch_size, seed):
    self.data, self.normalizer, self.vectorizer = data, normalizer, vectorizer
    self.config, self.batch_size = config, batch_size
    clips = {}
    self.items = []
    for entry in entries:
      if entry.motion_id not in clips:
        clips[entry.motion_id] = normalizer.normalize(data.features(entry.motion_id))
      self.items.append((entry, clips[entry.motion_id][entry.start:entry.end]))
    self.rng = np.random.default_rng(seed)

  def __call__(self):
    picks = self.rng.integers(len(self.items), size=self.batch_size)
    motions = np.zeros((self.batch_size, self.config.max_motion_len, self.config.feature_dim),
                       np.float32)
    lengths, tokens = np.zeros(self.batch_size, np.int32), []
    for row, i in enumerate(picks):
      entry, motion = self.items[i]
      crop = crops.random_crop(motion[:self.config.max_motion_len], self.rng,
                               self.config.unit_length)
      motions[row, :len(crop)], lengths[row] = crop, len(crop)
      tokens.append(entry.captions[int(self.rng.integers(len(entry.captions)))].tokens)
    words, pos, text_lengths = self.vectorizer.encode_batch(tokens)
    return words, pos, text_lengths, motions, lengths


def train_evaluator(data_dir: str, out_dir: str, dataset: str = "humanml3d",
                    config_overrides: dict | None = None,
                    settings: TrainSettings = TrainSettings(), logdir: str | None = None,
                    progress: bool = True) -> dict:
  """Trains on the train split, scores R-precision on val, saves the evaluator to out_dir."""
  data = formats.MotionDataset(data_dir, dataset)
  train = data.entries("train", on_error="skip")
  if not train.entries:
    raise formats.MotionDataError(data_dir, f"no train entry to train the evaluator on "
                                  f"({train.summary()})")
  normalizer = Normalizer.from_dir(data_dir, "meta", data.skeleton.feature_dim)
  config = networks.EvaluatorConfig(feature_dim=data.skeleton.feature_dim,
                                    **(config_overrides or {}))
  words, vectors = dataset_word_table(train.entries, config.word_dim, settings.seed)
  vectorizer = WordVectorizer(words, vectors)
  batches = _Batches(data, train.entries, normalizer, vectorizer, config, settings.batch_size,
                     settings.seed)

  model = networks.T2MEvaluator(config)
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(settings.seed))
  params = model.init(init_rng, *batches())["params"]
  optimizer = optax.adam(settings.learning_rate)
  opt_state = optimizer.init(params)

  def loss_fn(params, batch, rng, shift):
    words, pos, text_lengths, motions, lengths = batch
    text_emb, motion_emb = model.apply({"params": params}, words, pos, text_lengths, motions,
                                       lengths, deterministic=False, rngs={"dropout": rng})
    return contrastive_loss(text_emb, motion_emb, shift, settings.margin)

  @jax.jit
  def step(params, opt_state, batch, rng, shift):
    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng, shift)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, parts

  writer = _writer(logdir)
  start, history, shift_rng = time.time(), [], np.random.default_rng([settings.seed, 1])
  bar = tqdm(range(1, settings.steps + 1), desc="evaluator", disable=not progress)
  for i in bar:
    shift = int(shift_rng.integers(1, settings.batch_size))
    params, opt_state, loss, (pos_loss, neg_loss) = step(
        params, opt_state, batches(), jax.random.fold_in(dropout_rng, i), shift)
    if i % settings.log_every == 0 or i == settings.steps:
      scalars = {"loss": float(loss), "positive": float(pos_loss), "negative": float(neg_loss)}
      history.append((i, scalars))
      bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items()})
      if writer:
        writer.write_scalars(i, scalars)
  if writer:
    writer.flush()

  provenance = {"trained_on": os.path.abspath(data_dir), "steps": settings.steps,
                "settings": dataclasses.asdict(settings), "word_vectors": "random per word",
                "train_entries": len(train.entries), "seconds": round(time.time() - start, 1)}
  store.save_evaluator(out_dir, config, jax.device_get(params), words, vectors, normalizer,
                       dataset, provenance)
  evaluator = store.load_evaluator(out_dir)
  return {"history": history, "validation": validation_scores(evaluator, data, "val"),
          "seconds": time.time() - start}


def validation_scores(evaluator, data: formats.MotionDataset, split: str, seed: int = 0) -> dict:
  """R-precision and MM-Dist of ground-truth pairs: how well the evaluator matches."""
  entries = data.entries(split, on_error="skip").entries
  if len(entries) < 2:
    return {}
  rng = np.random.default_rng(seed)
  motions = [crops.random_crop(data.motion(e), rng) for e in entries]
  tokens = [e.captions[int(rng.integers(len(e.captions)))].tokens for e in entries]
  text_emb, motion_emb = evaluator.embed_texts(tokens), evaluator.embed_motions(motions)
  group = min(32, len(entries))
  top = retrieval.r_precision(text_emb, motion_emb, min(3, group), group, rng)
  out = {f"r_top{k + 1}": float(v) for k, v in enumerate(top)}
  out["mm_dist"] = retrieval.matching_score(text_emb, motion_emb)
  out["group_size"] = group
  return out


def _writer(logdir: str | None):
  if not logdir:
    return None
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(logdir, asynchronous=False)
