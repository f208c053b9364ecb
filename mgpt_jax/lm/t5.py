"""Encoder-decoder T5 v1.1 / Flan-T5 with the module interface t5x's EncoderDecoderModel uses.

    module = Transformer(config)
    logits = module.apply(variables, encoder_input_tokens, decoder_input_tokens,
                          decoder_target_tokens, enable_dropout=False)

`encode` / `decode` are the methods t5x calls while decoding; decode=True with a
mutable `cache` collection runs one position at a time. Segment ids give packed
examples their block-diagonal masks. The network knows nothing of training.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax.lm.config import T5Config
from mgpt_jax.lm.layers import (DenseGeneral, Embed, MlpBlock, MultiHeadAttention, RMSNorm,
                                RelativePositionBiases, constrain)


def attention_mask(query_valid, key_valid, query_segments=None, key_segments=None):
  """(batch, 1, q, k) boolean mask from validity (and, for packing, segment equality)."""
  mask = query_valid[:, None, :, None] & key_valid[:, None, None, :]
  if query_segments is not None:
    mask &= query_segments[:, None, :, None] == key_segments[:, None, None, :]
  return mask


def causal_mask(length: int):
  return jnp.asarray(np.tril(np.ones((length, length), bool)))[None, None]


# T5Config.remat_policy -> what jax.checkpoint keeps of a layer for the backward pass.
REMAT_POLICIES = {
    "full": None,  # nothing but the layer's inputs: recompute the whole layer
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat_layer(layer_cls, policy: str, static_argnums: tuple[int, ...]):
  """`layer_cls` under nn.remat with the named policy ('none': unchanged).

  static_argnums count `self` as 0: the flags (deterministic, decode) stay Python bools.
  """
  if policy == "none":
    return layer_cls
  if policy not in REMAT_POLICIES:
    raise ValueError(f"remat_policy {policy!r}: expected 'none' or one of "
                     f"{sorted(REMAT_POLICIES)}")
  return nn.remat(layer_cls, policy=REMAT_POLICIES[policy], static_argnums=static_argnums)


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, bias, mask, deterministic: bool):
    c, dtype = self.config, jnp.dtype(self.config.dtype)
    dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    h = RMSNorm(c.layer_norm_epsilon, dtype, name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(c.num_heads, c.head_dim, c.dropout_rate, dtype, name="attention")(
        h, h, mask, bias, deterministic=deterministic)
    x = x + dropout(h, deterministic=deterministic)
    h = RMSNorm(c.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dtype, name="mlp")(h, deterministic)
    return constrain(x + dropout(h, deterministic=deterministic), ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, encoded, bias, self_mask, cross_mask, deterministic: bool,
               decode: bool):
    c, dtype = self.config, jnp.dtype(self.config.dtype)
    dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    attention = lambda name: MultiHeadAttention(c.num_heads, c.head_dim, c.dropout_rate, dtype,
                                                name=name)
    h = RMSNorm(c.layer_norm_epsilon, dtype, name="pre_self_attention_layer_norm")(x)
    h = attention("self_attention")(h, h, self_mask, bias, deterministic=deterministic,
                                    decode=decode)
    x = x + dropout(h, deterministic=deterministic)
    h = RMSNorm(c.layer_norm_epsilon, dtype, name="pre_cross_attention_layer_norm")(x)
    h = attention("encoder_decoder_attention")(h, encoded, cross_mask, None,
                                               deterministic=deterministic, decode=decode,
                                               cross=True)
    x = x + dropout(h, deterministic=deterministic)
    h = RMSNorm(c.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dtype, name="mlp")(h, deterministic)
    return constrain(x + dropout(h, deterministic=deterministic), ("batch", "length", "embed"))


class Encoder(nn.Module):
  config: T5Config
  token_embedder: nn.Module

  @nn.compact
  def __call__(self, tokens, segment_ids=None, deterministic: bool = True):
    c, dtype = self.config, jnp.dtype(self.config.dtype)
    dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    x = dropout(self.token_embedder(tokens.astype(jnp.int32)), deterministic=deterministic)
    length = tokens.shape[-1]
    bias = RelativePositionBiases(c.relative_attention_num_buckets,
                                  c.relative_attention_max_distance, c.num_heads, dtype,
                                  name="relpos_bias")(length, length, True)
    mask = attention_mask(tokens > 0, tokens > 0, segment_ids, segment_ids)
    layer = remat_layer(EncoderLayer, c.remat_policy, static_argnums=(4,))
    for i in range(c.num_encoder_layers):
      x = layer(c, name=f"layers_{i}")(x, bias, mask, deterministic)
    x = RMSNorm(c.layer_norm_epsilon, dtype, name="encoder_norm")(x)
    return dropout(x, deterministic=deterministic)


class Decoder(nn.Module):
  config: T5Config
  token_embedder: nn.Module

  @nn.compact
  def __call__(self, encoded, tokens, self_mask, cross_mask, deterministic: bool = True,
               decode: bool = False, max_decode_length: int | None = None):
    c, dtype = self.config, jnp.dtype(self.config.dtype)
    dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    x = dropout(self.token_embedder(tokens.astype(jnp.int32)), deterministic=deterministic)
    length = max_decode_length if decode and max_decode_length else tokens.shape[-1]
    bias = RelativePositionBiases(c.relative_attention_num_buckets,
                                  c.relative_attention_max_distance, c.num_heads, dtype,
                                  name="relpos_bias")(length, length, False)
    # Decoding runs no backward pass: nothing to rematerialise there.
    layer = remat_layer(DecoderLayer, "none" if decode else c.remat_policy, static_argnums=(6, 7))
    for i in range(c.num_decoder_layers):
      x = layer(c, name=f"layers_{i}")(x, encoded, bias, self_mask, cross_mask, deterministic,
                                       decode)
    x = RMSNorm(c.layer_norm_epsilon, dtype, name="decoder_norm")(x)
    x = dropout(x, deterministic=deterministic)
    if c.logits_via_embedding:  # tied table: Hugging Face scales the hidden state by d^-0.5
      logits = self.token_embedder.attend(x * (c.emb_dim ** -0.5))
    else:
      logits = DenseGeneral(c.vocab_size, ("embed", "vocab"), dtype=dtype, name="logits_dense")(x)
    return constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))


class Transformer(nn.Module):
  """T5 encoder-decoder; call signature and methods as t5x's EncoderDecoderModel expects."""
  config: T5Config

  def setup(self):
    c = self.config
    self.token_embedder = Embed(c.vocab_size, c.emb_dim, jnp.dtype(c.dtype))
    self.encoder = Encoder(c, self.token_embedder)
    self.decoder = Decoder(c, self.token_embedder)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, enable_dropout: bool = True):
    return self.encoder(encoder_input_tokens, encoder_segment_ids, deterministic=not enable_dropout)

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
             encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None,
             enable_dropout: bool = True, decode: bool = False,
             max_decode_length: int | None = None):
    del decoder_positions  # relative attention needs no absolute positions
    if decode:
      self_mask = None  # the cache masks positions not yet decoded
      cross_mask = attention_mask(jnp.ones_like(decoder_input_tokens, bool),
                                  encoder_input_tokens > 0)
    else:
      valid = decoder_target_tokens > 0
      self_mask = attention_mask(valid, valid, decoder_segment_ids, decoder_segment_ids)
      self_mask &= causal_mask(decoder_input_tokens.shape[-1])
      cross_mask = attention_mask(valid, encoder_input_tokens > 0, decoder_segment_ids,
                                  encoder_segment_ids)
    return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask,
                        deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
               encoder_segment_ids=None, decoder_segment_ids=None, encoder_positions=None,
               decoder_positions=None, *, enable_dropout: bool = True, decode: bool = False,
               max_decode_length: int | None = None):
    """Logits (batch, target_length, vocab) of teacher-forced decoding."""
    del encoder_positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       encoder_segment_ids, decoder_segment_ids, decoder_positions,
                       enable_dropout, decode, max_decode_length)
