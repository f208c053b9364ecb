"""The bundle's LM computed by the CPU kernels (cpu_kernels.py), the network unchanged:

    tree = panel_tree(params)       # float32 matrices as {"panels": ...} (the float kernel)
    tree = quantize.quantize_tree(params)  # or int8 as {"int8": ..., "scale": ...}
    with kernel_layers():           # DenseGeneral and Embed read such nodes through the kernels
      module.apply({"params": tree}, ...)

A Flax method interceptor swaps the layer's product for the kernel's where the layer's
parameter is a panel or quantized node, and the attention (without dropout: inference) for the
attention kernel's; every other parameter and layer computes as before.
"""
from __future__ import annotations

import contextlib
import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mgpt_jax.inference import cpu_kernels, quantize
from mgpt_jax.lm import layers

PANELS = "panels"
# Below this many weights XLA's own dot is as fast (the quickstart's model: 10,387 against 8,011
# tokens/s at batch 1 when all its matrices went through the kernel).
MIN_PANEL_WEIGHTS = 1 << 17


def is_panels(node) -> bool:
  return isinstance(node, dict) and set(node) == {PANELS}


def _cross_key_or_value(path: tuple[str, ...]) -> bool:
  # Projected once per answer from the kernel itself (layers.MultiHeadAttention._cached_cross).
  return "encoder_decoder_attention" in path and path[-2] in ("key", "value")


def panel_tree(params: dict, min_weights: int | None = None,
               path: tuple[str, ...] = ()) -> dict:
  """The DenseGeneral kernels of >= min_weights (default MIN_PANEL_WEIGHTS) weights (numpy) as
  {"panels": cpu_kernels.to_panels((K, N))}; everything else as it was."""
  min_weights = MIN_PANEL_WEIGHTS if min_weights is None else min_weights
  out = {}
  for name, value in params.items():
    here = path + (name,)
    if isinstance(value, dict):
      out[name] = panel_tree(value, min_weights, here)
    elif (name == "kernel" and np.ndim(value) >= 2 and np.size(value) >= min_weights
          and not _cross_key_or_value(here)):
      w = np.asarray(value, np.float32)
      k = math.prod(w.shape[:len(quantize.contracted_axes(here, w.ndim))])
      out[name] = {PANELS: cpu_kernels.to_panels(w.reshape(k, -1))}
    else:
      out[name] = value
  return out


def _trailing_inputs(module: layers.DenseGeneral, x) -> tuple[tuple[int, ...], int]:
  """(the leading shape, K) of a DenseGeneral input: the kernels contract its trailing axes."""
  axes = sorted(a % x.ndim for a in np.atleast_1d(module.axis))
  if axes != list(range(x.ndim - len(axes), x.ndim)):
    raise ValueError(f"a kernel DenseGeneral contracts axes {axes} of a rank-{x.ndim} input: "
                     "expected the trailing ones")
  return x.shape[:x.ndim - len(axes)], math.prod(x.shape[x.ndim - len(axes):])


def attention(query, key, value, mask=None, bias=None):
  """layers.MultiHeadAttention.attend through the attention kernel: (batch, q, heads, kv)."""
  scores_bias = (jnp.zeros((1, 1, 1, key.shape[1]), jnp.float32) if bias is None
                 else bias.astype(jnp.float32))
  if mask is not None:  # the kernel reads the mask from the bias
    scores_bias = jnp.where(mask, scores_bias, layers.NEG_INF)
  # At a decode step this undoes the caches' own turn to heads-major: no copy.
  heads_major = lambda x: x.transpose(0, 2, 1, 3)
  out = cpu_kernels.attention(heads_major(query), heads_major(key), heads_major(value),
                              scores_bias)
  return heads_major(out)


def _layer(next_fun, args, kwargs, context):
  module, method = context.module, context.method_name
  if isinstance(module, layers.DenseGeneral) and method == "__call__":
    node = module.variables.get("params", {}).get("kernel")
    if is_panels(node) or quantize.is_quantized(node):
      lead, k = _trailing_inputs(module, args[0])
      x = args[0].reshape(*lead, k)
      features = tuple(np.atleast_1d(module.features))
      if is_panels(node):
        y = cpu_kernels.panel_matmul(x, node[PANELS], math.prod(features))
      else:
        y = cpu_kernels.int8_matmul(x, node["int8"].reshape(-1, k), node["scale"])
      return y.reshape(*lead, *features).astype(module.dtype)
  if isinstance(module, layers.MultiHeadAttention) and method == "attend":
    return attention(*args).astype(module.dtype)
  if isinstance(module, layers.Embed) and method in ("__call__", "attend"):
    node = module.variables.get("params", {}).get("embedding")
    if quantize.is_quantized(node):
      q, scale = node["int8"], node["scale"]
      if method == "attend":  # rows of the table are the outputs: already (N, K)
        return cpu_kernels.int8_matmul(args[0], q, scale).astype(module.dtype)
      ids = args[0].astype(jnp.int32)
      rows = jnp.take(q, ids, axis=0).astype(jnp.float32) * jnp.take(scale, ids)[..., None]
      return rows.astype(module.dtype)
  return next_fun(*args, **kwargs)


@contextlib.contextmanager
def kernel_layers():
  """Inside, DenseGeneral and Embed layers whose parameter is a panel or quantized node compute
  through the CPU kernels instead of a float copy in the model's layout, and so does the
  attention."""
  with nn.intercept_methods(_layer):
    yield
