"""T2M-GPT's motion VQ-VAE (`net_last.pth`) <-> our MotionVQVAE variables.

T2M-GPT saves {"net": HumanVQVAE.state_dict()}, keys under `vqvae.`; MotionGPT holds the
same network under `vae.`. Below that prefix:
  encoder.model.0                     Conv1d(nfeats -> width, k3)          our encoder/conv_in
  encoder.model.{2+i}.0               Conv1d(width -> width, k4, s2)       encoder/down_i
  encoder.model.{2+i}.1.model.{j}     ResConv1DBlock: conv1 (k3, dilated), conv2 (k1)
                                                                           encoder/resnet_i/block_j
  encoder.model.{2+down_t}            Conv1d(width -> code_dim, k3)        encoder/conv_out
  decoder.model.0                     Conv1d(code_dim -> width, k3)        decoder/conv_in
  decoder.model.{2+i}.0.model.{j}     ResConv1DBlock                       decoder/resnet_i/block_j
  decoder.model.{2+i}.2               Conv1d after the x2 upsampling       decoder/up_i
  decoder.model.{2+down_t}, {4+down_t}  the last two Conv1d                decoder/conv_mid, conv_out
  quantizer.codebook                  (num_codes, code_dim) buffer         vq_stats/quantizer/codebook
Odd indices are parameterless ReLUs; the resnet block j has dilation growth**(depth-1-j),
as our `dilations` lists them. The EMA statistics are not saved by the reference: an import
restarts them from the codebook (sum = codebook, count = 1). Sizes are read off the tensors;
the dilation growth rate (3 in every released config) and the ReLU activation are not
visible in a state dict and are taken as given.
"""
from __future__ import annotations

import numpy as np

from mgpt_jax.interop import torch_file
from mgpt_jax.tokenizer.vqvae import VQConfig

PREFIX = "vqvae."  # T2M-GPT's HumanVQVAE wraps the network in `.vqvae`
CODEBOOK = "quantizer.codebook"


def _conv(torch_name: str, path: tuple[str, ...]):
  return [(f"{torch_name}.weight", ("params",) + path + ("kernel",)),
          (f"{torch_name}.bias", ("params",) + path + ("bias",))]


def _resnet(torch_name: str, path: tuple[str, ...], depth: int):
  rows = []
  for j in range(depth):
    block = path + (f"block_{j}",)
    rows += _conv(f"{torch_name}.model.{j}.conv1", block + ("conv_dilated",))
    rows += _conv(f"{torch_name}.model.{j}.conv2", block + ("conv_out",))
  return rows


def key_map(config: VQConfig) -> list[tuple[str, tuple[str, ...]]]:
  """(torch key, our variable path) of every tensor of the reference network."""
  d, depth = config.down_t, config.depth
  rows = _conv("encoder.model.0", ("encoder", "conv_in"))
  for i in range(d):
    rows += _conv(f"encoder.model.{2 + i}.0", ("encoder", f"down_{i}"))
    rows += _resnet(f"encoder.model.{2 + i}.1", ("encoder", f"resnet_{i}"), depth)
  rows += _conv(f"encoder.model.{2 + d}", ("encoder", "conv_out"))
  rows += _conv("decoder.model.0", ("decoder", "conv_in"))
  for i in range(d):
    rows += _resnet(f"decoder.model.{2 + i}.0", ("decoder", f"resnet_{i}"), depth)
    rows += _conv(f"decoder.model.{2 + i}.2", ("decoder", f"up_{i}"))
  rows += _conv(f"decoder.model.{2 + d}", ("decoder", "conv_mid"))
  rows += _conv(f"decoder.model.{4 + d}", ("decoder", "conv_out"))
  rows.append((CODEBOOK, ("vq_stats", "quantizer", "codebook")))
  return rows


def _count(state: dict, pattern: str, start: int = 0) -> int:
  """How many consecutive indices from `start` have a `pattern` key."""
  n = 0
  while pattern.format(start + n) in state:
    n += 1
  return n


def infer_config(state: dict[str, np.ndarray], source: str,
                 dilation_growth_rate: int = 3) -> VQConfig:
  """The VQConfig a state dict (prefix stripped) was built with."""
  for key in ("encoder.model.0.weight", CODEBOOK):
    if key not in state:
      raise ValueError(f"{source}: no {key!r}; not a T2M-GPT/MotionGPT VQ-VAE state dict "
                       f"(keys start {sorted(state)[:3]})")
  if any(".norm1." in k or ".norm2." in k for k in state):
    raise ValueError(f"{source}: the residual blocks have norm layers; only norm=None (the "
                     "released configs) is supported")
  down_t = _count(state, "encoder.model.{}.0.weight", start=2)
  depth = _count(state, "encoder.model.2.1.model.{}.conv1.weight")
  width, nfeats, _ = state["encoder.model.0.weight"].shape
  if down_t == 0 or depth == 0:
    raise ValueError(f"{source}: found {down_t} downsampling stages of {depth} residual blocks; "
                     "expected encoder.model.2.0 and encoder.model.2.1.model.0")
  kernel = state["encoder.model.2.0.weight"].shape[-1]
  if kernel != 4:
    raise ValueError(f"{source}: encoder.model.2.0.weight has kernel {kernel}; our encoder "
                     "downsamples with stride 2, kernel 4 (stride_t=2)")
  num_codes, code_dim = state[CODEBOOK].shape
  latent = state[f"encoder.model.{2 + down_t}.weight"].shape[0]
  if latent != code_dim:
    raise ValueError(f"{source}: output_emb_width {latent} differs from the codebook's "
                     f"code_dim {code_dim}")
  return VQConfig(nfeats=int(nfeats), num_codes=int(num_codes), code_dim=int(code_dim),
                  width=int(width), down_t=int(down_t), depth=int(depth),
                  dilation_growth_rate=dilation_growth_rate)


def _to_ours(array: np.ndarray) -> np.ndarray:
  return array.transpose(2, 1, 0) if array.ndim == 3 else array  # (out, in, k) -> (k, in, out)


def _to_torch(array: np.ndarray) -> np.ndarray:
  return array.transpose(2, 1, 0) if array.ndim == 3 else array


def _set(tree: dict, path, value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def expected_shapes(config: VQConfig) -> dict[str, tuple[int, ...]]:
  """{torch key: shape} of the reference network built with `config`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mgpt_jax.tokenizer.vqvae import MotionVQVAE  # pylint: disable=g-import-not-at-top
  unit = config.frames_per_token
  shapes = jax.eval_shape(lambda: MotionVQVAE(config).init(
      {"params": jax.random.key(0), "vq": jax.random.key(1)}, jnp.zeros((1, unit, config.nfeats))))
  return {key: _to_torch(np.empty(_get(shapes, path).shape, np.int8)).shape
          for key, path in key_map(config)}


def state_to_variables(state: dict[str, np.ndarray], source: str,
                       dilation_growth_rate: int = 3) -> tuple[VQConfig, dict]:
  """(config, flax variables) of a reference VQ-VAE state dict (prefix stripped)."""
  config = infer_config(state, source, dilation_growth_rate)
  expected = expected_shapes(config)
  problems = [f"missing {k}" for k in expected if k not in state]
  problems += [f"unexpected {k}" for k in state if k not in expected]
  problems += [f"{k} has shape {tuple(state[k].shape)}, expected {shape}"
               for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
  if problems:
    raise ValueError(f"{source}: not the VQ-VAE layout of {config}: " + "; ".join(problems[:5])
                     + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
  variables: dict = {}
  for key, path in key_map(config):
    _set(variables, path, np.ascontiguousarray(_to_ours(state[key]), np.float32))
  codebook = variables["vq_stats"]["quantizer"]["codebook"]
  variables["vq_stats"]["quantizer"].update(
      code_sum=codebook.copy(), code_count=np.ones(config.num_codes, np.float32),
      initialized=np.array(True))
  return config, variables


def variables_to_state(config: VQConfig, variables) -> dict[str, np.ndarray]:
  """The reference state dict (no prefix, float32 numpy) of our variables."""
  return {key: np.ascontiguousarray(_to_torch(np.asarray(_get(variables, path), np.float32)))
          for key, path in key_map(config)}


def read_net(checkpoint: dict, path: str,
             dilation_growth_rate: int = 3) -> tuple[VQConfig, dict]:
  """(config, variables) of T2M-GPT's loaded VQ-VAE checkpoint {"net": state dict}."""
  net = checkpoint.get("net")
  if not isinstance(net, dict):
    hint = (" (`trans` is T2M-GPT's transformer, not its VQ-VAE)" if "trans" in checkpoint
            else "")
    raise ValueError(f"{path}: no 'net' state dict; top-level keys {sorted(map(str, checkpoint))}"
                     f"{hint}")
  prefix = PREFIX if any(str(k).startswith(PREFIX) for k in net) else ""
  return state_to_variables(torch_file.to_numpy(net, path, prefix), path, dilation_growth_rate)
