"""Text-motion retrieval metrics of the T2M protocol (numpy): R-precision and MM-Dist.

Embeddings come from the pretrained text/motion evaluators (Guo et al.), one row per
(text, motion) pair: row i of `text_emb` belongs with row i of `motion_emb`.
"""
from __future__ import annotations

import numpy as np


def _pairs(text_emb, motion_emb):
  """Both embedding sets as float64 (N, D) arrays of the same shape."""
  text_emb = np.asarray(text_emb, dtype=np.float64)
  motion_emb = np.asarray(motion_emb, dtype=np.float64)
  if text_emb.ndim != 2 or motion_emb.ndim != 2:
    raise ValueError(f"embeddings must be (N, D); got text {text_emb.shape}, motion {motion_emb.shape}")
  if text_emb.shape != motion_emb.shape:
    raise ValueError(f"text and motion embeddings must pair up row by row; got text {text_emb.shape}, "
                     f"motion {motion_emb.shape}")
  return text_emb, motion_emb


def euclidean_distance_matrix(a, b):
  """Pairwise L2 distances (N, D) x (M, D) -> (N, M)."""
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"expected (N, D) and (M, D) with the same D; got {a.shape} and {b.shape}")
  # |a|^2 - 2 a.b + |b|^2 can go slightly negative from round-off; clip before the sqrt.
  sq = (a**2).sum(1)[:, None] - 2.0 * a @ b.T + (b**2).sum(1)[None, :]
  return np.sqrt(np.maximum(sq, 0.0))


def _grouped(text_emb, motion_emb, group_size, rng):
  """Optionally permute the pairs, then cut them into floor(N / group_size) groups of
  (group_size, D); the remainder is dropped, as the reference's fixed-size batches do."""
  if group_size < 1:
    raise ValueError(f"group_size must be >= 1; got {group_size}")
  n = text_emb.shape[0]
  num_groups = n // group_size
  if num_groups == 0:
    raise ValueError(f"need at least group_size={group_size} pairs; got {n}")
  if rng is not None:
    # The reference shuffles the whole split before grouping, so each group mixes entries.
    order = rng.permutation(n)
    text_emb, motion_emb = text_emb[order], motion_emb[order]
  keep = num_groups * group_size
  shape = (num_groups, group_size, text_emb.shape[1])
  return text_emb[:keep].reshape(shape), motion_emb[:keep].reshape(shape)


def r_precision(text_emb, motion_emb, top_k: int = 3, group_size: int = 32, rng=None):
  """R-precision: within each group of `group_size` pairs, how often a text's own motion is
  among its k nearest motions (Euclidean), for k = 1..top_k.

  Args:
    text_emb, motion_emb: (N, D) paired embeddings.
    top_k: largest k reported.
    group_size: the protocol's R_size (32).
    rng: a np.random.Generator to shuffle the pairs first (the reference protocol); None
      keeps the given order (consecutive groups).

  Returns:
    (top_k,) float64 cumulative accuracies [top-1, top-2, ...] over the grouped pairs.
  """
  text_emb, motion_emb = _pairs(text_emb, motion_emb)
  if not 1 <= top_k <= group_size:
    raise ValueError(f"top_k must be in [1, group_size={group_size}]; got {top_k}")
  texts, motions = _grouped(text_emb, motion_emb, group_size, rng)
  hits = np.zeros(top_k, dtype=np.float64)
  for t, m in zip(texts, motions):
    dist = euclidean_distance_matrix(t, m)
    # Stable sort so ties rank the lower index first, deterministically.
    order = np.argsort(dist, axis=1, kind="stable")[:, :top_k]
    found = order == np.arange(group_size)[:, None]
    hits += np.cumsum(found, axis=1).astype(bool).sum(0)
  return hits / (texts.shape[0] * group_size)


def matching_score(text_emb, motion_emb, group_size: int | None = None, rng=None):
  """MM-Dist: mean L2 distance between each text and its own motion.

  With `group_size` set, only the pairs R-precision scores are averaged (the reference's
  trace / (32 * groups), remainder dropped); by default all N pairs count.
  """
  text_emb, motion_emb = _pairs(text_emb, motion_emb)
  if group_size is not None:
    texts, motions = _grouped(text_emb, motion_emb, group_size, rng)
    text_emb = texts.reshape(-1, texts.shape[-1])
    motion_emb = motions.reshape(-1, motions.shape[-1])
  if text_emb.shape[0] == 0:
    raise ValueError("need at least one (text, motion) pair")
  return float(np.linalg.norm(text_emb - motion_emb, axis=1).mean())
