"""T5 v1.1 / Flan-T5 hyper-parameters and the named sizes."""
from __future__ import annotations

import dataclasses
from typing import Any

# 32100 text ids (32000 SentencePiece + 100 sentinels) + 515 motion ids = 32615, padded to a
# multiple of 128 as T5 checkpoints pad their 32100 ids to 32128 rows.
MOTION_VOCAB_SIZE = 32640
CONFIG_FILE = "lm_config.json"  # the T5Config beside saved parameters and in run assets


@dataclasses.dataclass(frozen=True)
class T5Config:
  vocab_size: int = MOTION_VOCAB_SIZE
  emb_dim: int = 768  # d_model
  num_heads: int = 12
  head_dim: int = 64  # d_kv
  mlp_dim: int = 2048  # d_ff
  num_encoder_layers: int = 12
  num_decoder_layers: int = 12
  mlp_activations: tuple[str, ...] = ("gelu", "linear")  # gated-GELU (T5 v1.1); ("relu",) for T5 1.0
  dropout_rate: float = 0.1
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  logits_via_embedding: bool = False  # v1.1/Flan: untied LM head
  dtype: Any = "float32"  # activation dtype; parameters stay float32
  # Activation rematerialisation of each encoder/decoder layer in training: 'none', 'full'
  # (keep only each layer's inputs), 'dots' (keep matmul outputs) or 'dots_no_batch' (keep
  # the matmuls without batch dimensions, i.e. recompute attention). See REMAT_POLICIES.
  remat_policy: str = "none"

  def replace(self, **changes) -> "T5Config":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> "T5Config":
    values = dict(values)
    values["mlp_activations"] = tuple(values.get("mlp_activations", ("gelu", "linear")))
    return cls(**values)


# The Flan-T5 checkpoints' dimensions (reference §4.1); vocabulary rows extended for motion.
SIZES = {
    "tiny": T5Config(emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_encoder_layers=2,
                     num_decoder_layers=2),
    # Not a Flan-T5 size: the smallest model that learns the synthetic tasks (`mgpt quickstart`).
    "mini": T5Config(emb_dim=128, num_heads=4, head_dim=32, mlp_dim=256, num_encoder_layers=2,
                     num_decoder_layers=2),
    "small": T5Config(emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024, num_encoder_layers=8,
                      num_decoder_layers=8),
    "base": T5Config(),
    "large": T5Config(emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816, num_encoder_layers=24,
                      num_decoder_layers=24),
    "xl": T5Config(emb_dim=2048, num_heads=32, head_dim=64, mlp_dim=5120, num_encoder_layers=24,
                   num_decoder_layers=24),
}


def get_config(size: str, **overrides) -> T5Config:
  try:
    return SIZES[size].replace(**overrides)
  except KeyError:
    raise ValueError(f"unknown model size {size!r}: expected one of {sorted(SIZES)}") from None
