"""Joint-space errors (jax.numpy, usable inside jit): MPJPE, PA-MPJPE, acceleration error.

All take joints (..., T, J, 3) and an optional frame mask (..., T) and return
the mean over valid frames (and joints) in the joints' units.
"""
from __future__ import annotations

import jax.numpy as jnp


def _masked_mean(values, mask):
  """Mean of per-frame values (..., T) over frames where mask is true."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def mpjpe(predicted, target, mask=None, root_aligned: bool = True):
  """Mean per-joint position error, after moving both roots (joint 0) to the origin."""
  if root_aligned:
    predicted = predicted - predicted[..., :1, :]
    target = target - target[..., :1, :]
  per_frame = jnp.linalg.norm(predicted - target, axis=-1).mean(-1)
  return _masked_mean(per_frame, mask)


def procrustes_align(predicted, target):
  """The similarity transform (scale, rotation, translation) of `predicted` closest to
  `target`, applied per frame: (..., J, 3) -> (..., J, 3)."""
  mu_p = predicted.mean(-2, keepdims=True)
  mu_t = target.mean(-2, keepdims=True)
  p, t = predicted - mu_p, target - mu_t
  u, s, vt = jnp.linalg.svd(jnp.swapaxes(p, -1, -2) @ t)
  v = jnp.swapaxes(vt, -1, -2)
  # Flip the last axis where needed so the result is a rotation, not a reflection.
  d = jnp.sign(jnp.linalg.det(v @ jnp.swapaxes(u, -1, -2)))
  signs = jnp.stack([jnp.ones_like(d), jnp.ones_like(d), d], axis=-1)
  rotation = (v * signs[..., None, :]) @ jnp.swapaxes(u, -1, -2)
  scale = (s * signs).sum(-1) / jnp.maximum((p**2).sum((-1, -2)), 1e-12)
  return scale[..., None, None] * p @ jnp.swapaxes(rotation, -1, -2) + mu_t


def pa_mpjpe(predicted, target, mask=None):
  """MPJPE after per-frame Procrustes alignment with scale."""
  aligned = procrustes_align(predicted, target)
  return _masked_mean(jnp.linalg.norm(aligned - target, axis=-1).mean(-1), mask)


def acceleration_error(predicted, target, mask=None):
  """Mean error of second differences p[t+1] - 2 p[t] + p[t-1] (per joint, per frame)."""
  def accel(x):
    return x[..., 2:, :, :] - 2 * x[..., 1:-1, :, :] + x[..., :-2, :, :]
  per_frame = jnp.linalg.norm(accel(predicted) - accel(target), axis=-1).mean(-1)
  if mask is not None:
    mask = mask[..., 2:] & mask[..., 1:-1] & mask[..., :-2]
  return _masked_mean(per_frame, mask)
