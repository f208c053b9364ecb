"""Stage 1 as a training model: the VQ-VAE plus its reconstruction loss."""
from __future__ import annotations

import json
import os

import jax

from mgpt_jax import atomic_io
from mgpt_jax.tokenizer.losses import ReconstructionLoss
from mgpt_jax.tokenizer.quantizer import STATS
from mgpt_jax.tokenizer.vqvae import MotionVQVAE, VQConfig

CONFIG_FILE = "vq_config.json"


class VQModel:

  def __init__(self, config: VQConfig = VQConfig(), loss: ReconstructionLoss = ReconstructionLoss()):
    self.config = config
    self.module = MotionVQVAE(config)
    self.loss = loss

  def init_variables(self, rng, batch) -> dict:
    params_rng, vq_rng = jax.random.split(rng)
    return self.module.init({"params": params_rng, "vq": vq_rng}, batch["motion"])

  def loss_fn(self, params, model_state, batch, rng):
    out, new_state = self.module.apply({"params": params, **model_state}, batch["motion"],
                                       train=True, rngs={"vq": rng}, mutable=[STATS])
    loss, terms = self.loss(out["reconstruction"], batch["motion"], out["commit_loss"])
    return loss, ({"loss": loss, "perplexity": out["perplexity"], **terms}, new_state)

  def save_assets(self, directory: str) -> None:
    atomic_io.write_text(os.path.join(directory, CONFIG_FILE),
                         json.dumps(self.config.to_dict(), indent=2))


def load_config(directory: str) -> VQConfig:
  path = os.path.join(directory, CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      return VQConfig(**json.load(f))
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no tokenizer config; is {directory} a stage-1 model "
                            "directory?") from None
