"""Choosing the next token from logits: greedy argmax, and sampling with temperature, top-k, top-p.

The reference semantics are filter_logits's; sample_token draws from the same distribution
without sorting the vocabulary. Keys may be one per batch or one per row (row_keys): with one
per row, a row's tokens do not depend on the batch it is sent in. jax and numpy only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -1e10  # finite, as in layers.py: sums and differences of masked scores stay finite
CANDIDATES = 256  # tokens sample_token draws among under top-k / top-p (its bound on a traced top_k)


def argmax_and_logsumexp(logits, chunk: int = 128):
  """(first argmax, logsumexp) over the last axis of (N, vocab) logits.

  XLA:CPU's variadic (value, index) reduce is ~7x slower than a plain max over the 32k
  vocabulary; a max per chunk, then an argmax over chunk maxima and within the winning
  chunk, returns the same first index at a fraction of the cost, and the max is shared.
  """
  n, vocab = logits.shape
  if vocab % chunk:
    top = jnp.max(logits, axis=-1)
    token = jnp.argmax(logits, axis=-1)
  else:
    blocks = logits.reshape(n, vocab // chunk, chunk)
    block_max = jnp.max(blocks, axis=-1)
    block = jnp.argmax(block_max, axis=-1)
    row = jnp.take_along_axis(blocks, block[:, None, None], axis=1)[:, 0]
    token = block * chunk + jnp.argmax(row, axis=-1)
    top = jnp.max(block_max, axis=-1)
  lse = top + jnp.log(jnp.sum(jnp.exp(logits - top[:, None]), axis=-1))
  return token.astype(jnp.int32), lse


def filter_logits(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
  """Tempered logits with everything outside the top-k and the top-p nucleus at NEG_INF.

  The reference semantics of sampling; it sorts the vocabulary for top_p, which XLA:CPU does
  slowly (~0.2 s for 32 x 32k), so `sample_token` uses it only as a fallback.
  """
  logits = logits / temperature
  if top_k and top_k < logits.shape[-1]:
    ranked = jax.lax.top_k(logits, top_k)[0]
    # min, not ranked[:, -1]: XLA rewrites a sliced top_k into a full sort (~100x slower).
    logits = jnp.where(logits < jnp.min(ranked, -1, keepdims=True), NEG_INF, logits)
  else:
    ranked = None
  if top_p < 1.0:
    if ranked is None:
      ranked = -jnp.sort(-logits, axis=-1)
    logits = jnp.where(logits < _nucleus_floor(ranked, jax.nn.logsumexp(logits, -1), top_p),
                       NEG_INF, logits)
  return logits


def _nucleus_floor(ranked, lse, top_p: float):
  """The smallest logit of the nucleus: the shortest prefix of `ranked` (descending) whose mass
  reaches top_p; the first token always stays. lse normalises over the whole vocabulary."""
  probs = jnp.exp(ranked - lse[:, None])
  keep = jnp.cumsum(probs, axis=-1) - probs < top_p
  return jnp.min(jnp.where(keep, ranked, jnp.inf), axis=-1, keepdims=True)


def sample_token(logits, key, temperature=1.0, top_k=0, top_p=1.0,
                 candidates: int = CANDIDATES):
  """A token id per row drawn from filter_logits(...)'s distribution, without a full sort.

  key: one key for the batch, or (N,) keys, one per row (a row's draw then depends on its own
  key and logits alone, whatever the batch). temperature and top_p may be traced scalars; so may
  top_k (0 disables it, else at most `candidates`), which is how the bundle takes them per call.
  With top-k or top-p the draw is among the top `top_k` (else `candidates`) tokens only; when
  those hold less than top_p of some row's mass, a lax.cond falls back to sorting the vocabulary.
  (Ties at the k-th value: exactly k tokens here, all of them in filter_logits.)
  """
  logits = logits / temperature
  vocab = logits.shape[-1]
  static_k, static_p = isinstance(top_k, int), isinstance(top_p, (int, float))
  if static_k and static_p and not top_k and top_p >= 1.0:
    return _categorical(key, logits)
  bound = min(top_k if static_k and top_k else candidates, vocab)
  values, ids = jax.lax.top_k(logits, bound)
  if static_k and top_k:
    has_k = True
  else:  # a traced top_k keeps the first top_k of the `bound` candidates
    has_k = top_k > 0
    values = jnp.where(has_k & (jnp.arange(bound) >= top_k), NEG_INF, values)
  if static_k and static_p and top_p >= 1.0:
    return _draw(key, values, ids)
  full_lse = jax.nn.logsumexp(logits, axis=-1)
  if static_p and top_p >= 1.0:
    nucleus = values
  else:
    lse = jnp.where(has_k, jax.nn.logsumexp(values, axis=-1), full_lse)
    nucleus = jnp.where(values < _nucleus_floor(values, lse, top_p), NEG_INF, values)
  if static_k and top_k:
    return _draw(key, nucleus, ids)
  covered = jnp.all(has_k | (jnp.sum(jnp.exp(values - full_lse[:, None]), axis=-1) >= top_p))
  if bound == vocab:
    covered = jnp.array(True)

  def whole_vocabulary():
    if static_p:
      return _categorical(key, filter_logits(logits, 1.0, 0, top_p))
    return jax.lax.cond(top_p >= 1.0, lambda: _categorical(key, logits),
                        lambda: _categorical(key, _nucleus_filter(logits, top_p)))

  return jax.lax.cond(covered, lambda: _draw(key, nucleus, ids), whole_vocabulary)


def _nucleus_filter(logits, top_p):
  ranked = -jnp.sort(-logits, axis=-1)
  floor = _nucleus_floor(ranked, jax.nn.logsumexp(logits, -1), top_p)
  return jnp.where(logits < floor, NEG_INF, logits)


def _categorical(key, logits):
  """jax.random.categorical with one key, or (N,) keys (one per row of logits)."""
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  if key.ndim == (1 if typed else 2):
    return jax.vmap(jax.random.categorical)(key, logits).astype(jnp.int32)
  return jax.random.categorical(key, logits).astype(jnp.int32)


def _draw(key, values, ids):
  choice = _categorical(key, values)
  return jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


def row_keys(seeds, rows):
  """One key per row: the seed's key folded with the row's index in the caller's list, so that a
  row draws the same tokens whichever batch it is sent in."""
  return jax.vmap(lambda s, r: jax.random.fold_in(jax.random.key(s), r))(seeds, rows)


def fold_step(rng, i):
  typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
  if rng.ndim == (1 if typed else 2):
    return jax.vmap(jax.random.fold_in, (0, None))(rng, i)
  return jax.random.fold_in(rng, i)
