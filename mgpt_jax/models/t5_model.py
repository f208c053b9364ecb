"""Stages 2-3 as a training model: the T5 network plus T5X's token cross-entropy.

Batches are seqio's encoder-decoder features: encoder_input_tokens,
decoder_input_tokens, decoder_target_tokens, decoder_loss_weights and, when
packed, *_segment_ids / *_positions.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from mgpt_jax import atomic_io
from mgpt_jax.lm.config import CONFIG_FILE, T5Config
from mgpt_jax.lm.t5 import Transformer

# How the summed token loss is normalised (T5X's names).
NORMALIZERS = ("NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE")


def cross_entropy_with_z_loss(logits, targets, z_loss: float = 0.0, label_smoothing: float = 0.0):
  """Per-token cross entropy (and the z-loss part of it): z_loss * log(Z)^2 keeps logits small."""
  vocab = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  soft = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
  log_z = jax.nn.logsumexp(logits, axis=-1)
  loss = log_z - jnp.sum(soft * logits, axis=-1)
  z = z_loss * jnp.square(log_z)
  return loss + z, z


class EncoderDecoderModel:

  def __init__(self, config: T5Config, z_loss: float = 1e-4,
               loss_normalizing_factor: str | float | None = "NUM_REAL_TARGET_TOKENS",
               label_smoothing: float = 0.0):
    if isinstance(loss_normalizing_factor, str) and loss_normalizing_factor not in NORMALIZERS:
      raise ValueError(f"loss_normalizing_factor {loss_normalizing_factor!r}: expected a number, "
                       f"None (sum) or one of {NORMALIZERS}")
    self.config = config
    self.module = Transformer(config)
    self.z_loss, self.label_smoothing = z_loss, label_smoothing
    self.loss_normalizing_factor = loss_normalizing_factor

  def init_variables(self, rng, batch) -> dict:
    return self.module.init(rng, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                            batch["decoder_target_tokens"], enable_dropout=False)

  # Metrics the trainer adds up over micro-batches (the others it weights like the loss).
  summed_metrics = ("target_tokens",)

  @staticmethod
  def _weights(batch):
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights")
    return ((targets > 0) if weights is None else weights).astype(jnp.float32)

  def _denominator(self, weights):
    factor = self.loss_normalizing_factor
    if factor is None:
      return 1.0
    if factor == "NUM_REAL_TARGET_TOKENS":
      return jnp.maximum(weights.sum(), 1.0)
    if factor == "NUM_TOTAL_TARGET_TOKENS":
      return weights.size
    if factor == "AVERAGE_PER_SEQUENCE":
      return weights.shape[0]
    return factor

  def _normalise(self, total, weights):
    return total / self._denominator(weights)

  def loss_normalizer(self, batch):
    """What the summed token loss of `batch` is divided by: micro-batch i's gradient enters the
    accumulated step with weight normalizer(micro-batch i) / normalizer(whole batch)."""
    return self._denominator(self._weights(batch))

  def loss_fn(self, params, model_state, batch, rng):
    """rng=None evaluates: no dropout."""
    del model_state  # no state besides parameters
    logits = self.module.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"], batch.get("encoder_segment_ids"),
        batch.get("decoder_segment_ids"), batch.get("encoder_positions"),
        batch.get("decoder_positions"), enable_dropout=rng is not None,
        rngs=None if rng is None else {"dropout": rng})
    targets = batch["decoder_target_tokens"]
    weights = self._weights(batch)
    token_loss, z = cross_entropy_with_z_loss(logits, targets, self.z_loss, self.label_smoothing)
    loss = self._normalise((token_loss * weights).sum(), weights)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    metrics = {"loss": loss, "z_loss": self._normalise((z * weights).sum(), weights),
               "accuracy": (correct * weights).sum() / jnp.maximum(weights.sum(), 1.0),
               "target_tokens": weights.sum()}
    return loss, (metrics, {})

  def save_assets(self, directory: str) -> None:
    atomic_io.write_text(os.path.join(directory, CONFIG_FILE),
                         json.dumps(self.config.to_dict(), indent=2))
