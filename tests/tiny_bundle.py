"""A tiny untrained bundle for tests: random VQ-VAE codebooks, a 1-layer T5, a 40-piece vocabulary.

Built once per session by conftest's `tiny_system` fixture and shared by the bundle,
CLI and demo tests.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mgpt_jax.inference.bundle import export_bundle
from mgpt_jax.inference.lm_checkpoint import save_lm
from mgpt_jax.lm.config import get_config
from mgpt_jax.lm.sentencepiece_model import train_sentencepiece
from mgpt_jax.lm.t5 import Transformer
from mgpt_jax.lm.vocab import MotionVocabulary
from mgpt_jax.tokenizer.vqvae import MotionVQVAE, VQConfig

MAX_INPUT, MAX_DECODE = 48, 40
TEXTS = ["a person walks forward", "someone jumps up and down", "a man waves his left hand",
         "the person turns around slowly", "a woman kicks with her right foot"] * 4


def tokenizer_dir(root):
  config = VQConfig(num_codes=32, code_dim=16, width=16, depth=1)
  variables = MotionVQVAE(config).init(jax.random.key(0), jnp.zeros((1, 8, 263)))
  stats = dict(variables["vq_stats"]["quantizer"])  # untrained codebooks are zeros: make
  stats["codebook"] = jax.random.normal(jax.random.key(1), stats["codebook"].shape)  # codes differ
  stats = {"quantizer": stats}
  assets = os.path.join(root, "assets")
  os.makedirs(assets)
  with open(os.path.join(assets, "vq_config.json"), "w") as f:
    json.dump(config.to_dict(), f)
  with open(os.path.join(assets, "data.txt"), "w") as f:
    f.write("dataset=humanml3d\n")
  rng = np.random.default_rng(0)
  np.save(os.path.join(assets, "Mean.npy"), rng.normal(size=263).astype(np.float32))
  np.save(os.path.join(assets, "Std.npy"), rng.uniform(0.5, 2, 263).astype(np.float32))
  with ocp.CheckpointManager(os.path.join(root, "checkpoints")) as manager:
    manager.save(0, args=ocp.args.StandardSave(
        {"params": variables["params"], "model_state": {"vq_stats": stats}}))
    manager.wait_until_finished()
  return root


def lm_dir(root):
  assets = os.path.join(root, "assets")
  model = train_sentencepiece(TEXTS, os.path.join(assets, "sentencepiece.model"), vocab_size=40)
  with open(os.path.join(assets, "vocabulary.json"), "w") as f:
    json.dump({"sentencepiece_model": "sentencepiece.model", "num_motion_tokens": 515}, f)
  rows = -(-MotionVocabulary(model).vocab_size // 128) * 128
  config = get_config("tiny", vocab_size=rows, num_encoder_layers=1, num_decoder_layers=1)
  tokens = jnp.ones((1, 4), jnp.int32)
  params = Transformer(config).init(jax.random.key(2), tokens, tokens, tokens,
                                    enable_dropout=False)["params"]
  save_lm(root, config, params)
  return root



def build(root: str) -> tuple[str, str, str]:
  """(tokenizer_dir, lm_dir, bundle_dir) under root."""
  tokenizer = tokenizer_dir(os.path.join(root, "vq"))
  lm = lm_dir(os.path.join(root, "lm"))
  bundle = export_bundle(tokenizer, lm, os.path.join(root, "bundle"),
                         max_input_length=MAX_INPUT, max_decode_length=MAX_DECODE)
  return tokenizer, lm, bundle
