"""Quaternion helpers, (w, x, y, z) layout, vectorised over leading axes.

`qmul`, `qinv` and `qrot` take an `xp` array namespace so the same code runs in
numpy (float64 data processing) and in jax.numpy (inside jit).
"""
from __future__ import annotations

import numpy as np


def qmul(q, r, xp=np):
  """Hamilton product q * r."""
  w0, x0, y0, z0 = (q[..., i] for i in range(4))
  w1, x1, y1, z1 = (r[..., i] for i in range(4))
  return xp.stack([
      w0 * w1 - x0 * x1 - y0 * y1 - z0 * z1,
      w0 * x1 + x0 * w1 + y0 * z1 - z0 * y1,
      w0 * y1 - x0 * z1 + y0 * w1 + z0 * x1,
      w0 * z1 + x0 * y1 - y0 * x1 + z0 * w1,
  ], axis=-1)


def qinv(q, xp=np):
  """Conjugate: the inverse of a unit quaternion."""
  return q * xp.asarray([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def qrot(q, v, xp=np):
  """Rotates vectors v (..., 3) by unit quaternions q (..., 4)."""
  u = q[..., 1:]
  uv = xp.cross(u, v)
  uuv = xp.cross(u, uv)
  return v + 2.0 * (q[..., :1] * uv + uuv)


def qbetween(v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
  """The shortest-arc unit quaternion that turns direction v0 into v1.

  Where v0 and v1 are opposite the shortest arc is not unique (the reference
  returns NaN there); we turn 180 degrees about an axis perpendicular to v0.
  """
  v0, v1 = np.broadcast_arrays(np.asarray(v0, np.float64), np.asarray(v1, np.float64))
  axis = np.cross(v0, v1)
  w = np.sqrt((v0**2).sum(-1) * (v1**2).sum(-1)) + (v0 * v1).sum(-1)
  q = np.concatenate([w[..., None], axis], axis=-1)
  norm = np.linalg.norm(q, axis=-1, keepdims=True)
  degenerate = norm[..., 0] < 1e-12 * np.maximum(1.0, (v0**2).sum(-1))
  if np.any(degenerate):
    d0 = v0[degenerate]
    # Any axis perpendicular to v0: cross with whichever basis vector is least parallel.
    helper = np.eye(3)[np.argmin(np.abs(d0), axis=-1)]
    perp = np.cross(d0, helper)
    q[degenerate] = np.concatenate([np.zeros(len(d0))[:, None], perp], axis=-1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
  return q / norm


def canonical_sign(q: np.ndarray) -> np.ndarray:
  """q and -q are the same rotation; pick the one with w >= 0."""
  return np.where(q[..., :1] < 0, -q, q)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
  w, x, y, z = (q[..., i] for i in range(4))
  two_s = 2.0 / (q * q).sum(-1)
  m = np.stack([
      1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
      two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
      two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
  ], axis=-1)
  return m.reshape(q.shape[:-1] + (3, 3))


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
  """The continuous 6-D rotation: first column, then second column of the matrix."""
  m = quat_to_matrix(q)
  return np.concatenate([m[..., 0], m[..., 1]], axis=-1)


def cont6d_to_matrix(c: np.ndarray) -> np.ndarray:
  """Gram-Schmidt back to a rotation matrix (columns x, y, z)."""
  x = c[..., 0:3] / np.linalg.norm(c[..., 0:3], axis=-1, keepdims=True)
  z = np.cross(x, c[..., 3:6])
  z = z / np.linalg.norm(z, axis=-1, keepdims=True)
  y = np.cross(z, x)
  return np.stack([x, y, z], axis=-1)


def axis_angle_to_quat(axis_angle: np.ndarray) -> np.ndarray:
  """Rotation vectors (..., 3) (axis times angle in radians) to quaternions."""
  axis_angle = np.asarray(axis_angle, np.float64)
  angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
  # sin(a/2)/a, with its limit 1/2 near zero.
  scale = np.where(angle > 1e-12, np.sin(angle / 2) / np.maximum(angle, 1e-12), 0.5)
  return np.concatenate([np.cos(angle / 2), axis_angle * scale], axis=-1)


def yaw_quat(angle):
  """Rotation about +Y (up) by `angle` radians."""
  angle = np.asarray(angle, np.float64)
  zeros = np.zeros_like(angle)
  return np.stack([np.cos(angle / 2), zeros, np.sin(angle / 2), zeros], axis=-1)
