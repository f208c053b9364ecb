"""T5 v1.1 building blocks in Flax linen, with T5X's logical axis names on every parameter.

Parameters are created with `param_with_axes` (the `params_axes` collection t5x's
train state requires); large activations are constrained with logical names
(batch, length, embed, heads, kv, mlp, vocab) so the partitioning rules shard them.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Sequence

import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp
import numpy as np

param_with_axes = nn_partitioning.param_with_axes
constrain = nn_partitioning.with_sharding_constraint

NEG_INF = -1e10


def _normalize_axes(axes: Iterable[int], ndim: int) -> tuple[int, ...]:
  return tuple(a if a >= 0 else ndim + a for a in axes)


class DenseGeneral(nn.Module):
  """A bias-free linear map over one or more input axes to one or more output axes."""
  features: int | Sequence[int]
  kernel_axes: tuple[str, ...]
  axis: int | Sequence[int] = -1
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    axis = _normalize_axes(axis, x.ndim)
    in_shape = tuple(x.shape[a] for a in axis)
    fan_in = int(np.prod(in_shape))

    def init(key, shape, dtype):
      # Initialise as a (fan_in, fan_out) matrix so scales do not depend on the head split.
      return self.kernel_init(key, (fan_in, int(np.prod(features))), dtype).reshape(shape)

    kernel = param_with_axes("kernel", init, in_shape + features, jnp.float32,
                             axes=self.kernel_axes)
    contract = (axis, tuple(range(len(axis))))
    return jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype), (contract, ((), ())))


class RMSNorm(nn.Module):
  """T5's layer norm: scale only, no mean subtraction and no bias, computed in float32."""
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32**2, axis=-1, keepdims=True) + self.epsilon)
    scale = param_with_axes("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32,
                            axes=("embed",))
    return (y * scale).astype(self.dtype)


class Embed(nn.Module):
  num_embeddings: int
  features: int
  dtype: Any = jnp.float32

  def setup(self):
    self.embedding = param_with_axes("embedding", nn.initializers.normal(stddev=1.0),
                                     (self.num_embeddings, self.features), jnp.float32,
                                     axes=("vocab", "embed"))

  def __call__(self, ids):
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, x):
    """x @ embedding.T: logits from the shared table (tied embeddings)."""
    return jnp.einsum("...d,vd->...v", x.astype(self.dtype), self.embedding.astype(self.dtype))


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int,
                             max_distance: int):
  """T5's buckets: exact for small distances, logarithmic up to max_distance."""
  bucket = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # float32, as T5 and Hugging Face compute it: bucket edges must round the same way.
  ratio = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
  large = max_exact + (ratio / np.float32(np.log(max_distance / max_exact))
                       * np.float32(num_buckets - max_exact)).astype(np.int32)
  large = np.minimum(large, num_buckets - 1)
  return bucket + np.where(is_small, n, large)


class RelativePositionBiases(nn.Module):
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, query_length: int, key_length: int, bidirectional: bool = True):
    """Attention bias (1, heads, query_length, key_length); shapes are static."""
    context = np.arange(query_length)[:, None]
    memory = np.arange(key_length)[None, :]
    buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = param_with_axes("rel_embedding", nn.initializers.normal(stddev=0.1),
                            (self.num_heads, self.num_buckets), jnp.float32,
                            axes=("heads", "relpos_buckets"))
    return jnp.take(table, buckets, axis=1)[None].astype(self.dtype)


class MlpBlock(nn.Module):
  """Gated feed-forward: wo(act_0(wi_0 x) * act_1(wi_1 x)); ("relu",) is the ungated T5 1.0."""
  mlp_dim: int
  activations: Sequence[str] = ("gelu", "linear")
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    acts = {"gelu": functools.partial(jax.nn.gelu, approximate=True),  # T5 v1.1's gelu_new
            "gelu_exact": functools.partial(jax.nn.gelu, approximate=False),
            "relu": jax.nn.relu, "linear": lambda y: y}
    hidden = 1.0
    for i, name in enumerate(self.activations):
      dense_name = "wi" if len(self.activations) == 1 else f"wi_{i}"
      h = DenseGeneral(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype, name=dense_name)(x)
      hidden = hidden * acts[name](h)
    hidden = constrain(hidden, ("batch", "length", "mlp"))
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic=deterministic)
    return DenseGeneral(x.shape[-1], ("mlp", "embed"), dtype=self.dtype, name="wo")(hidden)


def attention_weights(query, key, mask=None, bias=None):
  """float32 softmax over keys of q . k (+ bias), masked keys at NEG_INF: (batch, heads, q, k)
  from (batch, q, heads, kv) and (batch, k, heads, kv)."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, NEG_INF)
  return jax.nn.softmax(logits)


class MultiHeadAttention(nn.Module):
  """T5 attention (no 1/sqrt(d) on the logits: it is folded into the query init).

  decode=True keeps a KV cache in the `cache` collection: for self-attention one
  new position per call; for cross-attention the encoder's keys and values are
  projected on the first call and reused after. Every cross entry, the `cross_filled`
  flag included, has the batch as its leading axis, so that decoders that expand or
  reorder the cache along it (t5x's beam search and multi-sample decoding) can.
  """
  num_heads: int
  head_dim: int
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, mask=None, bias=None, *, deterministic: bool = True,
               decode: bool = False, cross: bool = False):
    heads = (self.num_heads, self.head_dim)
    query_init = lambda *a: nn.initializers.lecun_normal()(*a) / np.sqrt(self.head_dim)
    projection = functools.partial(DenseGeneral, heads, ("embed", "heads", "kv"), dtype=self.dtype)
    query = constrain(projection(kernel_init=query_init, name="query")(inputs_q),
                      ("batch", "length", "heads", "kv"))
    key_proj, value_proj = projection(name="key"), projection(name="value")
    if decode and cross and self.has_variable("cache", "cross_key"):
      key, value = self._cached_cross(inputs_kv)
    else:
      key, value = key_proj(inputs_kv), value_proj(inputs_kv)
      if decode and cross:  # sizing call: create the cross cache
        self.variable("cache", "cross_key", jnp.zeros, key.shape, key.dtype)
        self.variable("cache", "cross_value", jnp.zeros, value.shape, value.dtype)
        self.variable("cache", "cross_filled", jnp.zeros, key.shape[:1], jnp.bool_)
    if decode and not cross:
      key, value, mask, bias = self._self_cache(key, value, mask, bias)
    key = constrain(key, ("batch", "length", "heads", "kv"))
    value = constrain(value, ("batch", "length", "heads", "kv"))

    if deterministic:
      out = self.attend(query, key, value, mask, bias)
    else:
      weights = attention_weights(query, key, mask, bias).astype(self.dtype)
      weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
      out = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
    return DenseGeneral(inputs_q.shape[-1], ("heads", "kv", "embed"), axis=(-2, -1),
                        dtype=self.dtype, name="out")(out)

  def attend(self, query, key, value, mask, bias):
    """(batch, q, heads, kv) outputs of the attention without dropout; a method of its own so
    that inference can swap it (kernel_layers.py: the CPU kernel of one decode step)."""
    weights = attention_weights(query, key, mask, bias).astype(self.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)

  def _self_cache(self, key, value, mask, bias):
    # Heads-major (batch, heads, length, kv), the layout the attention's dots read: a cache kept
    # as (batch, length, heads, kv) was transposed whole, keys and values, in every step.
    initialized = self.has_variable("cache", "cached_key")
    heads_major = lambda x: x.transpose(0, 2, 1, 3)
    shape = heads_major(key).shape
    cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, value.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not initialized:  # the sizing call: (batch, heads, max_length, kv)
      return key, value, mask, bias
    if key.shape[1] != 1:
      raise ValueError(f"decode=True takes one position per call, got {key.shape[1]}")
    i = index.value
    key = jax.lax.dynamic_update_slice(cached_key.value, heads_major(key), (0, 0, i, 0))
    value = jax.lax.dynamic_update_slice(cached_value.value, heads_major(value), (0, 0, i, 0))
    cached_key.value, cached_value.value, index.value = key, value, i + 1
    step_mask = (jnp.arange(key.shape[2]) <= i)[None, None, None, :]
    mask = step_mask if mask is None else jnp.logical_and(mask, step_mask)
    if bias is not None:  # the full (length x length) bias: keep this position's row
      bias = jax.lax.dynamic_slice_in_dim(bias, i, 1, axis=-2)
    return heads_major(key), heads_major(value), mask, bias

  def _cached_cross(self, encoded):
    cached_key = self.variable("cache", "cross_key")
    cached_value = self.variable("cache", "cross_value")
    filled = self.variable("cache", "cross_filled")
    params = self.variables["params"]

    def project():
      x = encoded.astype(self.dtype)
      return tuple(jnp.einsum("bsd,dhk->bshk", x, params[name]["kernel"].astype(self.dtype))
                   for name in ("key", "value"))

    # Every row is filled by the same call: one predicate for the whole batch.
    key, value = jax.lax.cond(jnp.all(filled.value),
                              lambda: (cached_key.value, cached_value.value), project)
    cached_key.value, cached_value.value = key, value
    filled.value = jnp.ones_like(filled.value)
    return key, value
