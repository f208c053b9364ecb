"""Language-model checkpoints on disk: save/load, and Hugging Face import/export.

A saved LM directory holds `lm_config.json` (the T5Config) and `params/` (an
orbax checkpoint of {"params": ...}). `load_lm` also reads a training run
directory (`assets/lm_config.json` + `checkpoints/<step>`).

    module, params = mgpt_jax.load_lm("/ckpt/flan_t5_base_motion")
    logits = module.apply({"params": params}, encoder_input_tokens, decoder_input_tokens,
                          decoder_target_tokens, enable_dropout=False)
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from mgpt_jax import atomic_io
from mgpt_jax.inference.checkpoint import read_variables
from mgpt_jax.lm import hf_convert
from mgpt_jax.lm.config import CONFIG_FILE, T5Config
from mgpt_jax.lm.t5 import Transformer

PARAMS_DIR = "params"
NUM_MOTION_TOKENS = 515
T5_ROWS, T5_TEXT_IDS = 32128, 32100  # rows of a T5 checkpoint, ids its vocabulary uses


def save_lm(out_dir: str, config: T5Config, params) -> None:
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(out_dir, PARAMS_DIR), {"params": params}, force=True)
  atomic_io.write_text(os.path.join(out_dir, CONFIG_FILE), json.dumps(config.to_dict(), indent=2))


def _read_config(path: str) -> T5Config:
  with open(path, encoding="utf-8") as f:
    return T5Config.from_dict(json.load(f))


def load_lm(path: str, step: int | None = None) -> tuple[Transformer, dict]:
  """(module, params) of a saved LM directory or of a training run directory."""
  path = os.path.abspath(path)
  if os.path.exists(os.path.join(path, CONFIG_FILE)):
    config = _read_config(os.path.join(path, CONFIG_FILE))
    with ocp.StandardCheckpointer() as checkpointer:
      params = checkpointer.restore(os.path.join(path, PARAMS_DIR))["params"]
  elif os.path.exists(os.path.join(path, "assets", CONFIG_FILE)):
    config = _read_config(os.path.join(path, "assets", CONFIG_FILE))
    params = read_variables(path, step)[0]["params"]
  else:
    raise FileNotFoundError(f"{path}: no {CONFIG_FILE} (nor assets/{CONFIG_FILE}); expected a "
                            "directory written by `mgpt import-hf` or a language-model run")
  return Transformer(config), params


def motion_vocab_rows(hf_rows: int) -> int:
  """Rows a T5 table needs for the motion ids, rounded up to a multiple of 128.

  A real T5 checkpoint has 32128 rows for 32100 ids, so motion k lands on 32100 + k;
  a custom checkpoint is assumed to use all its rows for text.
  """
  return -(-(_text_ids(hf_rows) + NUM_MOTION_TOKENS) // 128) * 128


def _text_ids(hf_rows: int) -> int:
  return T5_TEXT_IDS if hf_rows == T5_ROWS else hf_rows


def import_hf(hf_dir: str, out_dir: str, vocab_size: int | None = None,
              seed: int = 0, overwrite: bool = False) -> tuple[T5Config, dict]:
  """A transformers T5 checkpoint saved as our LM, tables extended to the motion vocabulary."""
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir}: exists and is not empty; pass --overwrite to replace it")
  config, params = motion_lm_from_hf(hf_dir, vocab_size, seed)
  save_lm(out_dir, config, params)
  return config, params


def motion_lm_from_hf(hf_dir: str, vocab_size: int | None = None,
                      seed: int = 0) -> tuple[T5Config, dict]:
  """(config, numpy params) of a transformers T5 with tables grown to `vocab_size` rows."""
  hf_config, state = hf_convert.read_hf_checkpoint(hf_dir)
  config, params = hf_convert.from_hf(hf_config, state)
  needed = _text_ids(config.vocab_size) + NUM_MOTION_TOKENS
  if vocab_size is not None and vocab_size < needed:
    raise ValueError(f"--vocab-size {vocab_size}: too small for the checkpoint's "
                     f"{_text_ids(config.vocab_size)} text ids and the {NUM_MOTION_TOKENS} "
                     f"motion ids; expected at least {needed}")
  rows = vocab_size or motion_vocab_rows(config.vocab_size)
  rng = np.random.default_rng(seed)
  params["token_embedder"]["embedding"] = hf_convert.extend_rows(
      params["token_embedder"]["embedding"], rows, rng)
  head = params["decoder"]["logits_dense"]
  head["kernel"] = hf_convert.extend_rows(head["kernel"].T, rows, rng).T
  return config.replace(vocab_size=rows), params


def export_hf(lm_dir: str, hf_dir: str, step: int | None = None) -> T5Config:
  """Our LM (saved or from a run) as a directory transformers' T5ForConditionalGeneration loads."""
  module, params = load_lm(lm_dir, step)
  hf_convert.write_hf_checkpoint(hf_dir, jax.tree.map(np.asarray, params), module.config)
  return module.config


def load_params(path: str, step: int | None = None) -> dict:
  """Host (numpy) parameters of a saved LM or run directory: a training stage's `init_params`."""
  _, params = load_lm(path, step)
  return jax.device_get(params)
