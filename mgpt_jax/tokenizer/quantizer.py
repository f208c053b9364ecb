"""Vector quantiser with an EMA codebook and dead-code reset (T2M-GPT's QuantizeEMAReset).

The codebook and its EMA statistics live in the mutable `vq_stats` collection:
they are model state, saved in checkpoints (the reference loses the statistics
on restart). Everything is computed on the global batch, so under jit with a
data-parallel sharding XLA all-reduces the statistics and every replica keeps
the same codebook as a one-device run on the same global batch.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

STATS = "vq_stats"


class QuantizeEMAReset(nn.Module):
  num_codes: int = 512
  code_dim: int = 512
  decay: float = 0.99

  def setup(self):
    shape = (self.num_codes, self.code_dim)
    self.codebook = self.variable(STATS, "codebook", jnp.zeros, shape, jnp.float32)
    self.code_sum = self.variable(STATS, "code_sum", jnp.zeros, shape, jnp.float32)
    self.code_count = self.variable(STATS, "code_count", jnp.zeros, (self.num_codes,), jnp.float32)
    self.initialized = self.variable(STATS, "initialized", lambda: jnp.array(False))

  def _rows_from_batch(self, x):
    """The first num_codes rows of the batch; tiled with small noise if it has fewer."""
    n = x.shape[0]
    if n >= self.num_codes:
      return x[:self.num_codes]
    repeats = -(-self.num_codes // n)
    tiled = jnp.tile(x, (repeats, 1))
    noise = jax.random.normal(self.make_rng("vq"), tiled.shape) * (0.01 / self.code_dim ** 0.5)
    return (tiled + noise)[:self.num_codes]

  def nearest(self, x, codebook):
    """Index of the nearest code of each row of x (N, D)."""
    distance = ((x**2).sum(-1, keepdims=True) - 2 * x @ codebook.T
                + (codebook**2).sum(-1)[None])
    return jnp.argmin(distance, axis=-1)

  def __call__(self, x, train: bool = False):
    """x (..., code_dim) -> quantised x (straight-through), commit loss, perplexity, indices."""
    shape = x.shape
    flat = x.reshape(-1, self.code_dim).astype(jnp.float32)
    codebook = self.codebook.value
    if train:
      batch_rows = self._rows_from_batch(flat)
      # First training step: the codebook starts as rows of the first batch.
      fresh = ~self.initialized.value
      codebook = jnp.where(fresh, batch_rows, codebook)
      code_sum = jnp.where(fresh, batch_rows, self.code_sum.value)
      code_count = jnp.where(fresh, 1.0, self.code_count.value)

    indices = self.nearest(flat, codebook)
    quantized = codebook[indices]
    onehot = jax.nn.one_hot(indices, self.num_codes, dtype=jnp.float32)
    counts = onehot.sum(0)
    probs = counts / counts.sum()
    perplexity = jnp.exp(-(probs * jnp.log(probs + 1e-7)).sum())

    if train and not self.is_initializing():
      code_sum = self.decay * code_sum + (1 - self.decay) * (onehot.T @ flat)
      code_count = self.decay * code_count + (1 - self.decay) * counts
      used = (code_count >= 1.0)[:, None]
      # A code whose running count fell below one is dead: reset it to a batch row.
      self.codebook.value = jnp.where(used, code_sum / code_count[:, None], batch_rows)
      self.code_sum.value = code_sum
      self.code_count.value = code_count
      self.initialized.value = jnp.array(True)

    commit_loss = jnp.mean((flat - jax.lax.stop_gradient(quantized))**2)
    quantized = flat + jax.lax.stop_gradient(quantized - flat)
    return (quantized.reshape(shape).astype(x.dtype), commit_loss, perplexity,
            indices.reshape(shape[:-1]))

  def lookup(self, indices):
    """Codebook rows of integer indices (...,) -> (..., code_dim)."""
    return self.codebook.value[indices]
