"""Weight-only int8 for the bundle's LM: each matrix as int8 with one float32 scale per channel.

    tree = quantize_tree(params)      # numpy; {"int8": q, "scale": s} in place of each matrix
    params = dequantize_tree(tree)    # traced inside the exported functions, before the loop

A channel is an output feature of a projection (the scale is max |w| over the contracted input
axes / 127, symmetric, round to nearest) and a row of the embedding table. Vectors (layer-norm
scales) and the small relative-position tables stay float32. The exported generation
dequantizes once per call, ahead of its while loop, to the compute dtype (bundle.COMPUTE_DTYPE:
float32): the bundle holds a quarter of the bytes; each step computes as float32 does.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

QUANTIZED_KEYS = ("int8", "scale")


def _contracted_axes(path: tuple[str, ...], ndim: int) -> tuple[int, ...]:
  if path[-2:] == ("token_embedder", "embedding"):
    return (1,)  # a lookup table: one scale per vocabulary row
  if path[-2] == "out" and ndim == 3:  # attention output: (heads, kv, embed)
    return (0, 1)
  return (0,)  # (embed, ...) and (mlp, embed), (embed, vocab)


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
    axes = _contracted_axes(where, w.ndim)
    scale = np.abs(w).max(axis=axes, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    out[name] = {"int8": np.clip(np.rint(w / scale), -127, 127).astype(np.int8), "scale": scale}
  return out


def is_quantized(node) -> bool:
  return isinstance(node, dict) and set(node) == set(QUANTIZED_KEYS)


def dequantize_tree(tree: dict, dtype=jnp.float32) -> dict:
  out = {}
  for name, value in tree.items():
    if is_quantized(value):
      out[name] = value["int8"].astype(dtype) * value["scale"].astype(dtype)
    elif isinstance(value, dict):
      out[name] = dequantize_tree(value, dtype)
    else:
      out[name] = value
  return out
