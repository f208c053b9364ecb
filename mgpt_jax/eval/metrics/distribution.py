"""Distribution metrics of the T2M protocol (numpy): FID, Diversity, MultiModality.

All work on evaluator embeddings (N, D); FID follows the standard Frechet-Inception-distance
code (Heusel et al. / pytorch-fid) that the T2M evaluation scripts copy.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg


def _rng(rng):
  return np.random.default_rng() if rng is None else rng


def _matrix(x, name="x"):
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"{name} must be (N, D); got shape {x.shape}")
  return x


def activation_statistics(x):
  """Mean (D,) and covariance (D, D) of embeddings (N, D); N >= 2 (unbiased np.cov)."""
  x = _matrix(x)
  if x.shape[0] < 2:
    raise ValueError(f"need at least 2 samples for a covariance; got shape {x.shape}")
  # atleast_2d: np.cov of one feature returns a 0-d array.
  return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6):
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
  |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"expected means (D,) and covariances (D, D); got mu1 {mu1.shape}, sigma1 "
                     f"{sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}")
  diff = mu1 - mu2
  covmean = linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    # A singular product can give a non-finite root; a small ridge makes it well posed.
    offset = np.eye(d) * eps
    covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    # Round-off on a near-singular product leaves tiny imaginary parts; large ones mean a bug.
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm has a large imaginary component {np.max(np.abs(covmean.imag))}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(a, b):
  """FID between two embedding sets (N, D) and (M, D), each summarized by mean and np.cov."""
  a, b = _matrix(a, "a"), _matrix(b, "b")
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"embedding widths differ: {a.shape} vs {b.shape}")
  return frechet_distance(*activation_statistics(a), *activation_statistics(b))


def diversity(x, times: int = 300, rng=None):
  """Mean L2 distance over `times` random pairs: two independent index draws of size
  `times` without replacement (the reference's DIVERSITY_TIMES = 300)."""
  x = _matrix(x)
  n = x.shape[0]
  if times < 1 or n < times:
    raise ValueError(f"diversity needs 1 <= times <= N; got times={times}, x shape {x.shape}")
  rng = _rng(rng)
  first = rng.choice(n, times, replace=False)
  second = rng.choice(n, times, replace=False)
  return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(x, times: int = 10, rng=None):
  """Mean L2 distance between `times` random pairs of generations per text, averaged over
  texts. x: (num_texts, num_repeats, D). As in the reference, one pair of index draws
  (each without replacement) is shared by all texts."""
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 3:
    raise ValueError(f"x must be (num_texts, num_repeats, D); got shape {x.shape}")
  if times < 1 or x.shape[1] < times:
    raise ValueError(f"multimodality needs 1 <= times <= num_repeats; got times={times}, x shape {x.shape}")
  rng = _rng(rng)
  first = rng.choice(x.shape[1], times, replace=False)
  second = rng.choice(x.shape[1], times, replace=False)
  return float(np.linalg.norm(x[:, first] - x[:, second], axis=2).mean())
