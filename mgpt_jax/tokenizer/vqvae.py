"""The motion VQ-VAE: encoder, EMA quantiser, decoder (MotionGPT / T2M-GPT stage 1)."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mgpt_jax.tokenizer.layers import Decoder, Encoder
from mgpt_jax.tokenizer.quantizer import QuantizeEMAReset


@dataclasses.dataclass(frozen=True)
class VQConfig:
  """Hyper-parameters; the defaults are the paper's (263-d HumanML3D input)."""
  nfeats: int = 263
  num_codes: int = 512
  code_dim: int = 512
  width: int = 512
  down_t: int = 2  # time is downsampled by 2**down_t: one token per 4 frames
  depth: int = 3
  dilation_growth_rate: int = 3
  decay: float = 0.99
  dtype: Any = "float32"  # compute dtype of the convolutions

  @property
  def frames_per_token(self) -> int:
    return 2 ** self.down_t

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


class MotionVQVAE(nn.Module):
  config: VQConfig = VQConfig()

  def setup(self):
    c = self.config
    dtype = jnp.dtype(c.dtype)
    self.encoder = Encoder(c.code_dim, c.width, c.down_t, c.depth, c.dilation_growth_rate, dtype)
    self.quantizer = QuantizeEMAReset(c.num_codes, c.code_dim, c.decay)
    self.decoder = Decoder(c.nfeats, c.width, c.down_t, c.depth, c.dilation_growth_rate, dtype)

  def _check(self, motion):
    c = self.config
    if motion.shape[-1] != c.nfeats:
      raise ValueError(f"motion has {motion.shape[-1]} features, the tokenizer expects {c.nfeats}")
    if motion.shape[-2] % c.frames_per_token:
      raise ValueError(f"motion length {motion.shape[-2]} is not a multiple of "
                       f"{c.frames_per_token} frames")

  def __call__(self, motion, train: bool = False):
    """Normalised motion (B, T, nfeats) -> dict of reconstruction, losses and codes."""
    self._check(motion)
    latent = self.encoder(motion)
    quantized, commit_loss, perplexity, indices = self.quantizer(latent, train=train)
    return {"reconstruction": self.decoder(quantized).astype(jnp.float32),
            "commit_loss": commit_loss, "perplexity": perplexity, "indices": indices}

  def encode(self, motion, lengths=None):
    """Normalised motion (B, T, nfeats) -> code indices (B, T / frames_per_token).

    lengths (B,), optional: each motion's frames (multiples of frames_per_token) in a padded
    batch; its codes are those it has alone, and codes past its end are meaningless."""
    self._check(motion)
    valid = None if lengths is None else jnp.arange(motion.shape[1]) < lengths[:, None]
    latent = self.encoder(motion, valid).astype(jnp.float32)
    flat = latent.reshape(-1, latent.shape[-1])
    return self.quantizer.nearest(flat, self.quantizer.codebook.value).reshape(latent.shape[:-1])

  def decode(self, indices, lengths=None):
    """Code indices (B, L) -> normalised motion (B, L * frames_per_token, nfeats).

    lengths (B,), optional: each row's codes in a padded batch; its frames are those it
    decodes to alone (frames past its end are meaningless)."""
    valid = None if lengths is None else jnp.arange(indices.shape[1]) < lengths[:, None]
    return self.decoder(self.quantizer.lookup(indices), valid).astype(jnp.float32)
