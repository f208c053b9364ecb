"""The T2M text-motion matching networks (Guo et al., CVPR'22) in Flax linen.

They reproduce the PyTorch modules the published T2M/KIT evaluators were trained as,
so the importer can load `finest.tar` and give the same embeddings. Every matmul runs
at HIGHEST precision: the evaluator defines the metric, so it must not drift with the
accelerator's default (bf16/TF32) matmuls.

Parameter tree (`params`), with the PyTorch state-dict key each entry comes from:

  movement_encoder/                            <- checkpoint['movement_encoder']
    conv_0/{kernel (4, D-4, 512), bias}          main.0.{weight (out,in,k) -> (k,in,out), bias}
    conv_1/{kernel (4, 512, 512), bias}          main.3.*
    out_net/{kernel (512, 512), bias}            out_net.{weight (out,in) -> (in,out), bias}
  motion_encoder/                              <- checkpoint['motion_encoder']
    input_emb/{kernel (512, 1024), bias}         input_emb.*
    gru/forward/{kernel_ih (1024, 3072), kernel_hh (1024, 3072), bias_ih (3072,), bias_hh (3072,)}
                                                 gru.weight_{ih,hh}_l0 (transposed),
                                                 gru.bias_{ih,hh}_l0
    gru/backward/{...}                           the same keys with the `_reverse` suffix
    gru/initial_state (2, 1024)                  hidden (2, 1, 1024)
    output_net/dense_0/{kernel (2048, 1024), bias} output_net.0
    output_net/norm/{scale, bias}                output_net.1 (LayerNorm)
    output_net/dense_1/{kernel (1024, 512), bias}  output_net.3
  text_encoder/                                <- checkpoint['text_encoder']
    pos_emb/{kernel (15, 300), bias}, input_emb/{kernel (300, 512), bias}
    gru/{forward, backward, initial_state (2, 512)}, output_net/{dense_0, norm, dense_1}

GRU gates are concatenated in PyTorch's order (r, z, n) along the last kernel axis.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp

param_with_axes = nn_partitioning.param_with_axes
PRECISION = jax.lax.Precision.HIGHEST
NUM_CONTACT_DIMS = 4  # foot contacts, the last 4 features; the evaluator drops them
LEAKY_SLOPE = 0.2
TORCH_LAYER_NORM_EPS = 1e-5
DOWNSAMPLE = 4  # frames per movement code: two stride-2 convolutions


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
  """Sizes of the published evaluators; defaults are the T2M/KIT ones."""
  feature_dim: int = 263  # 263 HumanML3D, 251 KIT, including the 4 foot contacts
  unit_length: int = 4  # frames per motion-GRU step (two stride-2 convs)
  word_dim: int = 300
  num_pos: int = 15
  text_hidden: int = 512
  motion_hidden: int = 1024
  movement_hidden: int = 512
  movement_latent: int = 512
  embed_dim: int = 512
  dropout: float = 0.2
  pack_motion: bool = True  # False: MotionGPT's motion GRU, run over the whole padded length
  max_text_len: int = 20  # caption tokens kept, before sos/eos are added
  max_motion_len: int = 196  # frames a motion is padded (or cropped) to

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      bad_int = not isinstance(value, int) or isinstance(value, bool) or value < 1
      if field.type == "int" and bad_int:
        raise ValueError(f"EvaluatorConfig.{field.name}: expected a positive int, got {value!r}")
    if self.feature_dim <= NUM_CONTACT_DIMS:
      raise ValueError(f"EvaluatorConfig.feature_dim: expected more than {NUM_CONTACT_DIMS} "
                       f"(the foot contacts are dropped), got {self.feature_dim}")
    if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"EvaluatorConfig.dropout: expected a float in [0, 1), got {self.dropout!r}")
    if not isinstance(self.pack_motion, bool):
      raise ValueError(f"EvaluatorConfig.pack_motion: expected a bool, got {self.pack_motion!r}")
    if self.unit_length != DOWNSAMPLE:
      raise ValueError(f"EvaluatorConfig.unit_length: expected {DOWNSAMPLE} (the movement "
                       f"encoder's two stride-2 convs give one GRU step per {DOWNSAMPLE} frames), "
                       f"got {self.unit_length}")
    if self.max_motion_len % self.unit_length:
      raise ValueError(f"EvaluatorConfig.max_motion_len ({self.max_motion_len}) must be a multiple "
                       f"of unit_length ({self.unit_length})")

  @property
  def text_steps(self) -> int:
    """Caption tokens including sos and eos."""
    return self.max_text_len + 2

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: Mapping[str, Any] | str) -> EvaluatorConfig:
    if isinstance(data, str):
      data = json.loads(data)
    if not isinstance(data, Mapping):
      raise ValueError(f"EvaluatorConfig: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
      raise ValueError(f"EvaluatorConfig: unknown fields {unknown}; expected some of "
                       f"{sorted(known)}")
    return cls(**data)


# --------------------------------------------------------------------------- layers


class Dense(nn.Module):
  """y = x W + b with a (in, out) kernel: a PyTorch Linear with its weight transposed."""
  features: int
  kernel_axes: tuple[str, str] = ("embed", "mlp")

  @nn.compact
  def __call__(self, x):
    kernel = param_with_axes("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features),
                             jnp.float32, axes=self.kernel_axes)
    bias = param_with_axes("bias", nn.initializers.zeros, (self.features,), jnp.float32,
                           axes=self.kernel_axes[1:])
    return jnp.dot(x, kernel, precision=PRECISION) + bias


class LayerNorm(nn.Module):
  """PyTorch's LayerNorm (eps 1e-5, biased variance), which Flax's default eps would not match."""
  axis_name: str = "mlp"

  @nn.compact
  def __call__(self, x):
    scale = param_with_axes("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32,
                            axes=(self.axis_name,))
    bias = param_with_axes("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32,
                           axes=(self.axis_name,))
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + TORCH_LAYER_NORM_EPS) * scale + bias


class Conv1D(nn.Module):
  """Channels-last (B, T, C) convolution; kernel (window, in, out) = torch's (out, in, k)."""
  features: int
  kernel_size: int
  stride: int
  padding: int

  @nn.compact
  def __call__(self, x):
    kernel = param_with_axes("kernel", nn.initializers.lecun_normal(),
                             (self.kernel_size, x.shape[-1], self.features), jnp.float32,
                             axes=("conv_window", "conv_in", "conv_out"))
    bias = param_with_axes("bias", nn.initializers.zeros, (self.features,), jnp.float32,
                           axes=("conv_out",))
    y = jax.lax.conv_general_dilated(x, kernel, window_strides=(self.stride,),
                                     padding=[(self.padding, self.padding)],
                                     dimension_numbers=("NWC", "WIO", "NWC"), precision=PRECISION)
    return y + bias


class OutputNet(nn.Module):
  """Linear -> LayerNorm -> LeakyReLU(0.2) -> Linear: the encoders' heads."""
  hidden: int
  features: int

  @nn.compact
  def __call__(self, x):
    x = Dense(self.hidden, name="dense_0")(x)
    x = nn.leaky_relu(LayerNorm(name="norm")(x), LEAKY_SLOPE)
    return Dense(self.features, kernel_axes=("mlp", "embed"), name="dense_1")(x)


# --------------------------------------------------------------------------- GRU


class GRUWeights(nn.Module):
  """One direction's PyTorch GRU weights, gates (r, z, n) along the last axis."""
  hidden: int

  @nn.compact
  def __call__(self, in_features: int):
    h3 = 3 * self.hidden
    init = nn.initializers.uniform(2.0 / self.hidden ** 0.5)
    # torch's U(-k, k), k = 1/sqrt(H)
    shifted = lambda key, shape, dtype: init(key, shape, dtype) - self.hidden ** -0.5
    kernel_ih = param_with_axes("kernel_ih", shifted, (in_features, h3), jnp.float32,
                                axes=("embed", "mlp"))
    kernel_hh = param_with_axes("kernel_hh", shifted, (self.hidden, h3), jnp.float32,
                                axes=("embed", "mlp"))
    bias_ih = param_with_axes("bias_ih", shifted, (h3,), jnp.float32, axes=("mlp",))
    bias_hh = param_with_axes("bias_hh", shifted, (h3,), jnp.float32, axes=("mlp",))
    return kernel_ih, kernel_hh, bias_ih, bias_hh


def bigru_final_states(gates_x, lengths, initial_state, kernel_hh, bias_hh):
  """Final states of both directions of a one-layer GRU, as pack_padded_sequence gives them.

  gates_x: (2, B, T, 3H) input projections x W_ih + b_ih of the forward and backward
  direction; lengths: (B,) valid steps; initial_state: (2, B, H); kernel_hh: (2, H, 3H);
  bias_hh: (2, 3H). Steps at or past a sequence's length leave its state unchanged, so
  the forward state stops after step len-1 and the backward one starts there: padded
  steps have no influence. Returns (B, 2H) = [forward final, backward final].
  """
  steps = gates_x.shape[2]
  time = jnp.arange(steps)
  # Time-major; the backward direction reads its inputs from the end.
  xs = jnp.stack([gates_x[0], gates_x[1][:, ::-1]], axis=0).transpose(2, 0, 1, 3)  # (T, 2, B, 3H)
  valid = jnp.stack([time[:, None] < lengths[None, :],
                     (steps - 1 - time)[:, None] < lengths[None, :]], axis=1)  # (T, 2, B)

  def step(h, inputs):
    gx, keep = inputs
    gh = jnp.einsum("dbh,dhk->dbk", h, kernel_hh, precision=PRECISION) + bias_hh[:, None, :]
    xr, xz, xn = jnp.split(gx, 3, axis=-1)
    hr, hz, hn = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h_new = (1.0 - z) * n + z * h
    return jnp.where(keep[..., None], h_new, h), None

  final, _ = jax.lax.scan(step, initial_state, (xs, valid))
  return jnp.concatenate([final[0], final[1]], axis=-1)


class BiGRU(nn.Module):
  """PyTorch's bidirectional one-layer GRU with a learned initial state; returns the final states.

  pack=True gives what a packed sequence gives (padding ignored); pack=False runs both
  directions over all T steps, padding included (MotionGPT's unpacked motion GRU).
  """
  hidden: int
  pack: bool = True

  @nn.compact
  def __call__(self, x, lengths):
    batch, steps = x.shape[:2]
    initial = param_with_axes("initial_state", nn.initializers.normal(1.0), (2, self.hidden),
                              jnp.float32, axes=("gru_direction", "mlp"))
    weights = [GRUWeights(self.hidden, name=name)(x.shape[-1]) for name in ("forward", "backward")]
    gates_x = jnp.stack([jnp.dot(x, w[0], precision=PRECISION) + w[2] for w in weights])
    kernel_hh = jnp.stack([w[1] for w in weights])
    bias_hh = jnp.stack([w[3] for w in weights])
    if self.pack:
      lengths = jnp.minimum(jnp.asarray(lengths, jnp.int32), steps)
    else:
      lengths = jnp.full((batch,), steps, jnp.int32)
    h0 = jnp.broadcast_to(initial[:, None, :], (2, batch, self.hidden))
    return bigru_final_states(gates_x, lengths, h0, kernel_hh, bias_hh)


# --------------------------------------------------------------------------- encoders


class TextEncoder(nn.Module):
  """(word vectors, POS one-hots, lengths) -> (B, embed_dim)."""
  config: EvaluatorConfig

  @nn.compact
  def __call__(self, word_embs, pos_onehot, lengths):
    c = self.config
    x = word_embs + Dense(c.word_dim, name="pos_emb")(pos_onehot)
    x = Dense(c.text_hidden, name="input_emb")(x)
    x = BiGRU(c.text_hidden, pack=True, name="gru")(x, lengths)
    return OutputNet(c.text_hidden, c.embed_dim, name="output_net")(x)


class MovementEncoder(nn.Module):
  """(B, T, D-4) normalised features -> (B, T / 4, movement_latent)."""
  config: EvaluatorConfig

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    c = self.config
    for i, width in enumerate((c.movement_hidden, c.movement_latent)):
      x = Conv1D(width, 4, stride=2, padding=1, name=f"conv_{i}")(x)
      x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
      x = nn.leaky_relu(x, LEAKY_SLOPE)
    return Dense(c.movement_latent, name="out_net")(x)


class MotionEncoder(nn.Module):
  """(B, T', movement_latent) movement codes, lengths in steps -> (B, embed_dim)."""
  config: EvaluatorConfig

  @nn.compact
  def __call__(self, movements, lengths):
    c = self.config
    x = Dense(c.motion_hidden, name="input_emb")(movements)
    x = BiGRU(c.motion_hidden, pack=c.pack_motion, name="gru")(x, lengths)
    return OutputNet(c.motion_hidden, c.embed_dim, name="output_net")(x)


class T2MEvaluator(nn.Module):
  """Both towers; `embed_text` and `embed_motion` are the two entry points."""
  config: EvaluatorConfig

  def setup(self):
    self.text_encoder = TextEncoder(self.config)
    self.movement_encoder = MovementEncoder(self.config)
    self.motion_encoder = MotionEncoder(self.config)

  def embed_text(self, word_embs, pos_onehot, lengths):
    """word_embs (B, L, word_dim), pos_onehot (B, L, num_pos), lengths (B,) incl. sos/eos."""
    return self.text_encoder(word_embs, pos_onehot, lengths)

  def embed_motion(self, features, lengths, deterministic: bool = True):
    """features (B, T, D) normalised with the evaluator's stats; lengths (B,) in frames."""
    c = self.config
    if features.shape[-1] != c.feature_dim:
      raise ValueError(f"embed_motion: expected features (B, T, {c.feature_dim}), "
                       f"got {features.shape}")
    movements = self.movement_encoder(features[..., :-NUM_CONTACT_DIMS], deterministic)
    return self.motion_encoder(movements, jnp.asarray(lengths) // c.unit_length)

  def __call__(self, word_embs, pos_onehot, text_lengths, features, motion_lengths,
               deterministic: bool = True):
    return (self.embed_text(word_embs, pos_onehot, text_lengths),
            self.embed_motion(features, motion_lengths, deterministic))


def dummy_inputs(config: EvaluatorConfig, batch: int = 1):
  """Zero inputs of the right shapes, for `init` / `eval_shape`."""
  text_len = config.text_steps
  return (jnp.zeros((batch, text_len, config.word_dim)),
          jnp.zeros((batch, text_len, config.num_pos)),
          jnp.full((batch,), text_len, jnp.int32),
          jnp.zeros((batch, config.max_motion_len, config.feature_dim)),
          jnp.full((batch,), config.max_motion_len, jnp.int32))


@functools.lru_cache(maxsize=8)
def param_shapes(config: EvaluatorConfig) -> dict[str, tuple[int, ...]]:
  """{"a/b/c": shape} of every parameter, without allocating them."""
  variables = jax.eval_shape(T2MEvaluator(config).init, jax.random.PRNGKey(0),
                             *dummy_inputs(config))
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return {"/".join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}
