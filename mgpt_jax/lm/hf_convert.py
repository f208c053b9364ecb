"""Hugging Face T5ForConditionalGeneration <-> our Flax T5 parameters (numpy, no torch needed).

Weights are read from `model.safetensors`, or from `pytorch_model.bin` with
torch.load(weights_only=True): no pickle from a user file is ever executed.
"""
from __future__ import annotations

import json
import os

import numpy as np

from mgpt_jax.lm.config import T5Config

_ACTIVATIONS = {"gated-gelu": ("gelu", "linear"), "gated-relu": ("relu", "linear"),
                "relu": ("relu",), "gelu": ("gelu_exact",)}
_PROJECTIONS = {name: proj for proj, name in _ACTIVATIONS.items()}


def config_from_hf(hf: dict) -> T5Config:
  projection = hf.get("feed_forward_proj", "relu")
  if projection not in _ACTIVATIONS:
    raise ValueError(f"feed_forward_proj {projection!r} is not supported: expected one of "
                     f"{sorted(_ACTIVATIONS)}")
  return T5Config(
      vocab_size=hf["vocab_size"], emb_dim=hf["d_model"], num_heads=hf["num_heads"],
      head_dim=hf["d_kv"], mlp_dim=hf["d_ff"], num_encoder_layers=hf["num_layers"],
      num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
      mlp_activations=_ACTIVATIONS[projection], dropout_rate=hf.get("dropout_rate", 0.1),
      relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
      logits_via_embedding=False)  # a tied head is imported as an untied copy: see from_hf


def config_to_hf(config: T5Config) -> dict:
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": config.vocab_size, "d_model": config.emb_dim, "num_heads": config.num_heads,
      "d_kv": config.head_dim, "d_ff": config.mlp_dim, "num_layers": config.num_encoder_layers,
      "num_decoder_layers": config.num_decoder_layers,
      "feed_forward_proj": _PROJECTIONS[tuple(config.mlp_activations)],
      "dropout_rate": config.dropout_rate,
      "relative_attention_num_buckets": config.relative_attention_num_buckets,
      "relative_attention_max_distance": config.relative_attention_max_distance,
      "layer_norm_epsilon": config.layer_norm_epsilon,
      # v4 reads "no tie" as "no output scaling"; v5 unties when lm_head differs from shared.
      "tie_word_embeddings": config.logits_via_embedding, "is_encoder_decoder": True,
      "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
      "initializer_factor": 1.0,
  }


def _attention(prefix: str, config: T5Config):
  """(hf name, our path, to ours, to hf) for one attention block's four projections."""
  h, d = config.num_heads, config.head_dim
  rows = []
  for hf_name, ours in (("q", "query"), ("k", "key"), ("v", "value")):
    rows.append((f"{prefix}.{hf_name}.weight", (ours, "kernel"),
                 lambda w: w.T.reshape(w.shape[1], h, d), lambda k: k.reshape(k.shape[0], -1).T))
  rows.append((f"{prefix}.o.weight", ("out", "kernel"),
               lambda w: w.T.reshape(h, d, w.shape[0]), lambda k: k.reshape(-1, k.shape[-1]).T))
  return rows


def _mlp(prefix: str, config: T5Config):
  names = ["wi"] if len(config.mlp_activations) == 1 else [
      f"wi_{i}" for i in range(len(config.mlp_activations))]
  transpose = lambda w: w.T
  return [(f"{prefix}.{n}.weight", n, transpose, transpose) for n in names + ["wo"]]


def _mapping(config: T5Config):
  """Every (hf name, our param path, to ours, to hf)."""
  transpose = lambda w: w.T
  same = lambda w: w
  rows = [("shared.weight", ("token_embedder", "embedding"), same, same)]
  for stack, num_layers in (("encoder", config.num_encoder_layers),
                            ("decoder", config.num_decoder_layers)):
    sublayers = ([("attention", "pre_attention_layer_norm", "SelfAttention")] if stack == "encoder"
                 else [("self_attention", "pre_self_attention_layer_norm", "SelfAttention"),
                       ("encoder_decoder_attention", "pre_cross_attention_layer_norm",
                        "EncDecAttention")])
    for i in range(num_layers):
      block = f"{stack}.block.{i}.layer"
      ours = (stack, f"layers_{i}")
      for j, (attention, norm, hf_attention) in enumerate(sublayers):
        rows.append((f"{block}.{j}.layer_norm.weight", ours + (norm, "scale"), same, same))
        rows += [(n, ours + (attention,) + p, a, b)
                 for n, p, a, b in _attention(f"{block}.{j}.{hf_attention}", config)]
      j = len(sublayers)
      rows.append((f"{block}.{j}.layer_norm.weight", ours + ("pre_mlp_layer_norm", "scale"),
                   same, same))
      rows += [(n, ours + ("mlp", p, "kernel"), a, b)
               for n, p, a, b in _mlp(f"{block}.{j}.DenseReluDense", config)]
    rows.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                 (stack, "relpos_bias", "rel_embedding"), transpose, transpose))
    rows.append((f"{stack}.final_layer_norm.weight", (stack, f"{stack}_norm", "scale"),
                 same, same))
  if not config.logits_via_embedding:
    rows.append(("lm_head.weight", ("decoder", "logits_dense", "kernel"), transpose, transpose))
  return rows


def _set(tree: dict, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: dict, path):
  for key in path:
    tree = tree[key]
  return tree


def hf_names(config: T5Config) -> list[str]:
  """The state-dict names a T5 of `config` is read from (without the tied table aliases)."""
  return [name for name, *_ in _mapping(config)]


def hf_shape(name: str, config: T5Config) -> tuple[int, ...]:
  """The shape transformers gives weight `name` of a T5 with `config`."""
  d, inner, ff = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
  suffix = name.rsplit(".", 2)[-2]
  if name in ("shared.weight", "lm_head.weight"):
    return (config.vocab_size, d)
  return {"layer_norm": (d,), "final_layer_norm": (d,), "q": (inner, d), "k": (inner, d),
          "v": (inner, d), "o": (d, inner), "wi": (ff, d), "wi_0": (ff, d), "wi_1": (ff, d),
          "wo": (d, ff),
          "relative_attention_bias": (config.relative_attention_num_buckets, config.num_heads),
          }[suffix]


_CONFIG_FIELDS = "d_model {emb_dim}, d_kv {head_dim}, num_heads {num_heads}, d_ff {mlp_dim}, " \
                 "vocab_size {vocab_size}"


def hf_to_params(state: dict[str, np.ndarray], config: T5Config) -> dict:
  """Our `params` tree from a Hugging Face state dict (numpy arrays).

  Every weight must have the shape the config gives it: a config that disagrees with its
  weights is refused here, not when the imported model is first run.
  """
  params: dict = {}
  missing = []
  for name, path, to_ours, _ in _mapping(config):
    if name not in state:
      missing.append(name)
      continue
    shape, expected = tuple(np.shape(state[name])), hf_shape(name, config)
    if shape != expected:
      raise ValueError(f"weight {name} has shape {shape}, but config.json ("
                       + _CONFIG_FIELDS.format(**config.to_dict())
                       + f") expects {expected}; the config does not match the weights")
    _set(params, path, np.asarray(to_ours(np.asarray(state[name], np.float32))))
  if missing:
    raise ValueError(f"the checkpoint lacks {len(missing)} T5 weights, e.g. {missing[:3]}")
  return params


def from_hf(hf_config: dict, state: dict[str, np.ndarray]) -> tuple[T5Config, dict]:
  """Config and params of a transformers T5, always with an untied LM head.

  transformers ties lm_head to the shared table unless the checkpoint holds a
  different lm_head, and scales the decoder output by d^-0.5 when
  `scale_decoder_outputs` (transformers >= 5) or, in older configs,
  `tie_word_embeddings` says so. Both are folded into our head's kernel.
  """
  config = config_from_hf(hf_config)
  state = dict(state)
  if "lm_head.weight" not in state:
    state["lm_head.weight"] = state["shared.weight"]
  scale = hf_config.get("scale_decoder_outputs", hf_config.get("tie_word_embeddings", True))
  if scale:
    state["lm_head.weight"] = state["lm_head.weight"] * np.float32(config.emb_dim ** -0.5)
  return config, hf_to_params(state, config)


def params_to_hf(params: dict, config: T5Config) -> dict[str, np.ndarray]:
  """A Hugging Face state dict (numpy float32) from our `params` tree."""
  state = {name: np.ascontiguousarray(to_hf(np.asarray(_get(params, path), np.float32)))
           for name, path, _, to_hf in _mapping(config)}
  for stack in ("encoder", "decoder"):
    state[f"{stack}.embed_tokens.weight"] = state["shared.weight"]
  return state


def read_hf_checkpoint(hf_dir: str) -> tuple[dict, dict[str, np.ndarray]]:
  """(config.json dict, state dict) of a transformers T5 directory."""
  config_path = os.path.join(hf_dir, "config.json")
  try:
    with open(config_path, encoding="utf-8") as f:
      hf_config = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"{config_path}: not found; is {hf_dir} a transformers model "
                            "directory?") from None
  except (ValueError, UnicodeDecodeError) as e:
    raise ValueError(f"{config_path}: not valid JSON ({e})") from None
  if not isinstance(hf_config, dict):
    raise ValueError(f"{config_path}: expected a JSON object of T5 settings")
  missing = [key for key in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_layers")
             if not isinstance(hf_config.get(key), int)]
  if missing:
    raise ValueError(f"{config_path}: lacks integer {', '.join(missing)}; expected a T5 config")
  if hf_config.get("model_type") not in ("t5", "mt5", None):
    raise ValueError(f"{config_path}: model_type {hf_config.get('model_type')!r} is not T5")
  safetensors_path = os.path.join(hf_dir, "model.safetensors")
  torch_path = os.path.join(hf_dir, "pytorch_model.bin")
  if os.path.exists(safetensors_path):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return hf_config, load_file(safetensors_path)
  if os.path.exists(torch_path):
    import torch  # pylint: disable=g-import-not-at-top
    state = torch.load(torch_path, map_location="cpu", weights_only=True)
    return hf_config, {k: v.float().numpy() for k, v in state.items()}
  raise FileNotFoundError(f"{hf_dir}: neither model.safetensors nor pytorch_model.bin found")


def write_hf_checkpoint(hf_dir: str, params: dict, config: T5Config) -> None:
  """config.json + model.safetensors that transformers' T5ForConditionalGeneration loads."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from mgpt_jax import atomic_io  # pylint: disable=g-import-not-at-top
  state = params_to_hf(params, config)
  # safetensors refuses tensors that share memory: give the tied copies their own buffers.
  state = {k: v.copy() for k, v in state.items()}
  os.makedirs(hf_dir, exist_ok=True)
  with atomic_io.atomic_path(os.path.join(hf_dir, "model.safetensors")) as tmp:
    save_file(state, tmp, metadata={"format": "pt"})
  atomic_io.write_text(os.path.join(hf_dir, "config.json"),
                       json.dumps(config_to_hf(config), indent=2))


def extend_rows(table: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
  """`table` (V, d) grown to `rows` rows; new rows drawn from a Gaussian fitted to the old ones."""
  if rows <= len(table):
    return table[:rows]
  mean = table.mean(0)
  centred = table - mean
  covariance = centred.T @ centred / len(table)
  # A small ridge keeps the factorisation defined when d > V or rows are collinear.
  ridge = 1e-6 * np.trace(covariance) / len(mean)
  chol = np.linalg.cholesky(covariance + ridge * np.eye(len(mean)))
  new = mean + rng.standard_normal((rows - len(table), len(mean))) @ chol.T
  return np.concatenate([table, new.astype(table.dtype)], axis=0)
