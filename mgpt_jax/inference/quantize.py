"""Weight-only int8 for the bundle's LM: each matrix as int8 with one float32 scale per channel.

    tree = quantize_tree(params)      # numpy; {"int8": q, "scale": s} in place of each matrix
    params = dequantize_tree(tree)    # back to the model's float layout
    with kernel_layers.kernel_layers():  # DenseGeneral and Embed compute from the int8
      module.apply({"params": tree}, ...)

A channel is an output feature of a projection (the scale is max |w| over the contracted input
axes / 127, symmetric, round to nearest) and a row of the embedding table. q holds the output
axes first and the contracted axes last, so that it is a row-major (N, K) matrix: the layout of
the int8 kernel (cpu_kernels.int8_matmul), which streams one contiguous row per output. s has the
output axes' shape. Vectors (layer-norm scales) and the small relative-position tables stay
float32.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

QUANTIZED_KEYS = ("int8", "scale")


def contracted_axes(path: tuple[str, ...], ndim: int) -> tuple[int, ...]:
  if path[-2:] == ("token_embedder", "embedding"):
    return (1,)  # a lookup table: one scale per vocabulary row
  if path[-2] == "out" and ndim == 3:  # attention output: (heads, kv, embed)
    return (0, 1)
  return (0,)  # (embed, ...) and (mlp, embed), (embed, vocab)


def _outputs_first(path: tuple[str, ...], ndim: int) -> tuple[int, ...]:
  """The permutation from a kernel's axes to q's: output axes, then contracted ones."""
  contracted = contracted_axes(path, ndim)
  return tuple(a for a in range(ndim) if a not in contracted) + contracted


def quantize_tree(params: dict, path: tuple[str, ...] = ()) -> dict:
  out = {}
  for name, value in params.items():
    where = path + (name,)
    if isinstance(value, dict):
      out[name] = quantize_tree(value, where)
      continue
    w = np.asarray(value, np.float32)
    if w.ndim < 2 or "relpos_bias" in where:
      out[name] = w
      continue
    order = _outputs_first(where, w.ndim)
    outputs = len(order) - len(contracted_axes(where, w.ndim))
    w = w.transpose(order)
    contracted = tuple(range(outputs, w.ndim))
    scale = np.abs(w).max(axis=contracted, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    out[name] = {"int8": q, "scale": scale.reshape(w.shape[:outputs])}
  return out


def is_quantized(node) -> bool:
  return isinstance(node, dict) and set(node) == set(QUANTIZED_KEYS)


def dequantize(node, path: tuple[str, ...], dtype=jnp.float32):
  """The float matrix, in the model's layout, of one quantized node at `path`."""
  q, scale = node["int8"], node["scale"]
  w = q.astype(dtype) * scale.astype(dtype).reshape(scale.shape + (1,) * (q.ndim - scale.ndim))
  return w.transpose(np.argsort(_outputs_first(path, q.ndim)))


def dequantize_tree(tree: dict, dtype=jnp.float32, where=lambda path: True,
                    path: tuple[str, ...] = ()) -> dict:
  """Float matrices for the quantized nodes whose path satisfies `where` (default: all)."""
  out = {}
  for name, value in tree.items():
    here = path + (name,)
    if is_quantized(value) and where(here):
      out[name] = dequantize(value, here, dtype)
    elif isinstance(value, dict) and not is_quantized(value):
      out[name] = dequantize_tree(value, dtype, where, here)
    else:
      out[name] = value
  return out
