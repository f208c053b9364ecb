"""Convolutional blocks of the T2M-GPT encoder/decoder, channels-last (B, T, C).

Parameters carry logical axis names (`params_axes` collection, as t5x expects) so
the runner can shard them by rules: conv kernels are (conv_window, conv_in, conv_out).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp

param_with_axes = nn_partitioning.param_with_axes


def _torch_default_init(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's Conv1d init, which the reference trains with."""
  bound = fan_in ** -0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class Conv1D(nn.Module):
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dilation: int = 1
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x, valid=None):
    """valid (B, T) bool: frames past a sequence's end are zeroed first, so that a padded
    batch computes what each sequence alone computes with the conv's own zero padding."""
    if valid is not None and (self.kernel_size > 1 or self.stride > 1):
      x = jnp.where(valid[..., None], x, 0)
    fan_in = x.shape[-1] * self.kernel_size
    kernel = param_with_axes("kernel", _torch_default_init(fan_in),
                             (self.kernel_size, x.shape[-1], self.features), jnp.float32,
                             axes=("conv_window", "conv_in", "conv_out"))
    bias = param_with_axes("bias", _torch_default_init(fan_in), (self.features,), jnp.float32,
                           axes=("conv_out",))
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), window_strides=(self.stride,),
        padding=[(self.padding, self.padding)], rhs_dilation=(self.dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"))
    return y + bias.astype(self.dtype)


class ResConv1DBlock(nn.Module):
  """Pre-activation residual block: x + conv1(relu(conv3_dilated(relu(x))))."""
  width: int
  dilation: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, valid=None):
    h = Conv1D(self.width, 3, padding=self.dilation, dilation=self.dilation, dtype=self.dtype,
               name="conv_dilated")(nn.relu(x), valid)
    h = Conv1D(self.width, 1, dtype=self.dtype, name="conv_out")(nn.relu(h))
    return x + h


class Resnet1D(nn.Module):
  width: int
  dilations: Sequence[int]  # the reference runs them largest first: 9, 3, 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, valid=None):
    for i, dilation in enumerate(self.dilations):
      x = ResConv1DBlock(self.width, dilation, self.dtype, name=f"block_{i}")(x, valid)
    return x


def dilations(depth: int, growth_rate: int) -> tuple[int, ...]:
  return tuple(growth_rate ** i for i in reversed(range(depth)))


class Encoder(nn.Module):
  """(B, T, nfeats) -> (B, T / 2**down_t, code_dim)."""
  code_dim: int
  width: int
  down_t: int
  depth: int
  dilation_growth_rate: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, valid=None):
    """valid (B, T) bool, optional: each sequence's frames (a multiple of 2**down_t)."""
    x = nn.relu(Conv1D(self.width, 3, padding=1, dtype=self.dtype, name="conv_in")(x, valid))
    for i in range(self.down_t):
      x = Conv1D(self.width, 4, stride=2, padding=1, dtype=self.dtype, name=f"down_{i}")(x, valid)
      valid = None if valid is None else valid[:, ::2]
      x = Resnet1D(self.width, dilations(self.depth, self.dilation_growth_rate), self.dtype,
                   name=f"resnet_{i}")(x, valid)
    return Conv1D(self.code_dim, 3, padding=1, dtype=self.dtype, name="conv_out")(x, valid)


class Decoder(nn.Module):
  """(B, L, code_dim) -> (B, L * 2**down_t, nfeats)."""
  nfeats: int
  width: int
  down_t: int
  depth: int
  dilation_growth_rate: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, valid=None):
    """valid (B, L) bool, optional: each sequence's codes."""
    x = nn.relu(Conv1D(self.width, 3, padding=1, dtype=self.dtype, name="conv_in")(x, valid))
    for i in range(self.down_t):
      x = Resnet1D(self.width, dilations(self.depth, self.dilation_growth_rate), self.dtype,
                   name=f"resnet_{i}")(x, valid)
      x = jnp.repeat(x, 2, axis=1)  # nearest-neighbour upsampling in time
      valid = None if valid is None else jnp.repeat(valid, 2, axis=1)
      x = Conv1D(self.width, 3, padding=1, dtype=self.dtype, name=f"up_{i}")(x, valid)
    x = nn.relu(Conv1D(self.width, 3, padding=1, dtype=self.dtype, name="conv_mid")(x, valid))
    return Conv1D(self.nfeats, 3, padding=1, dtype=self.dtype, name="conv_out")(x, valid)
