"""`export_bundle`: a trained tokenizer + language model as a self-contained inference bundle.

    export_bundle("runs/vq", "runs/instruct", "bundles/mgpt", dtype="bfloat16")
    model = MotionGPT.load("bundles/mgpt")  # motiongpt.py: no Flax, no training code

The bundle holds
  lm_params.npz, vq_variables.npz    parameters (np.savez; bfloat16 as uint16 bits; int8 as
                                     int8 + float32 scales per channel, see quantize.py; on
                                     CPU the LM's large matrices are read by the CPU kernels,
                                     cpu_kernels.py: int8 as it is, float32 as panels)
  sentencepiece.model, vocabulary.json
  mean.npy, std.npy                  the stats the tokenizer was trained with
  config.json                        T5Config, VQConfig, dataset, fps, feature dim, lengths
  *.jaxexport                        jax.export functions taking the parameters as inputs:
                                     generate_greedy / _sample / _beam (the whole answer:
                                     encoder, then lm/decoding.py's while loop with the KV
                                     cache, one call), vq_encoder, vq_decoder
  manifest.json                      versions and the sha256 of every other file
Parameters are inputs, not constants, so the three generators share one copy on disk.
The batch is symbolic everywhere; the encoder length is fixed (T5's relative position
buckets are computed in numpy from static lengths) and prompts are padded to it; the decode
cache has a fixed max_decode_length, and the step count to stop at is an input; the VQ length
is symbolic, with each row's own length an input (padded batches decode as rows alone).
It is written into a temporary sibling directory and renamed into place.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from importlib import metadata

import flax
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

import mgpt_jax
from mgpt_jax import atomic_io
from mgpt_jax.data import skeletons
from mgpt_jax.inference import motiongpt as mg
from mgpt_jax.inference import cpu_kernels, kernel_layers, quantize
from mgpt_jax.inference.lm_checkpoint import load_lm
from mgpt_jax.inference.tokenize_dataset import Tokenizer
from mgpt_jax.lm import decoding
from mgpt_jax.lm.vocab_core import VocabularyCore
from mgpt_jax.lm.t5 import Transformer
from mgpt_jax.tokenizer.vqvae import MotionVQVAE

DTYPES = ("float32", "bfloat16", "int8")
# int8 is weight-only: stored as int8 (a quarter of the bytes) and computed in float32, on CPU
# by the int8 kernel (cpu_kernels.py) from the int8 itself. bfloat16 compute was no faster for
# the model's shapes (README: inference benchmark) and agreed less.
COMPUTE_DTYPE = {"float32": "float32", "bfloat16": "bfloat16", "int8": "float32"}
NUM_BEAMS = 4
MAX_TOP_K = decoding.CANDIDATES


def _version(package: str) -> str:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return "unknown"


def _save_tree(path: str, tree: dict, dtype: str = "float32") -> None:
  """np.savez of the flattened tree; floats cast to `dtype` (bfloat16 kept as uint16 bits)."""
  arrays = {}
  for name, array in mg.flatten(jax.device_get(tree)).items():
    if np.issubdtype(array.dtype, np.floating) or array.dtype == ml_dtypes.bfloat16:
      if dtype == "bfloat16":
        arrays[name + mg.BF16_SUFFIX] = array.astype(ml_dtypes.bfloat16).view(np.uint16)
        continue
      array = array.astype(np.float32)
    arrays[name] = array
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def _read_vocabulary(vocabulary_dir: str) -> tuple[str, dict]:
  path = os.path.join(vocabulary_dir, mg.VOCABULARY)
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: missing; pass vocabulary_dir= (a run's assets/ with "
                            f"{mg.VOCABULARY} and {mg.SENTENCEPIECE})") from None
  model = os.path.join(vocabulary_dir, info["sentencepiece_model"])
  if not os.path.exists(model):
    raise FileNotFoundError(f"{model}: the SentencePiece model {path} names is missing")
  return model, info


def generation_functions(module: Transformer, max_decode_length: int, vocab_limit: int,
                         quantized: bool = False, num_beams: int = NUM_BEAMS,
                         kernels: bool = False) -> dict:
  """The plain functions exported for the LM, each a whole answer in one call.

    greedy(params, tokens, stop, min_length, forced) -> (answers (B, max_decode_length),
                                                         lengths (B,))
    sample(params, tokens, stop, min_length, forced, seeds, rows, temperature, top_k, top_p)
        -> the same
    beam(params, tokens) -> the same (the best of num_beams)

  forced (B, max_decode_length) holds the answer's known start, -1 where the model chooses
  (decoding.sample_loop), e.g. the kept head of an in-between answer.

  tokens (B, max_input_length) is the padded prompt; the loop ends when every row has met EOS
  or after `stop` steps, and no EOS is chosen before step `min_length`. Sampling draws row r with the key decoding.row_keys(seeds, rows)[r];
  temperature > 0, top_k (0 = off, else <= 256) and top_p are scalars given per call. Logits
  past `vocab_limit` (rows padding the embedding table) are never chosen. kernels: the
  parameters hold panel or quantized nodes for the CPU kernels (kernel_layers.py).
  """
  options = decoding.DecodeOptions(max_decode_length, vocab_limit=vocab_limit)
  if kernels:
    options = dataclasses.replace(options, greedy_choice=cpu_kernels.greedy_choice)
  dtype = module.config.dtype

  def answer(options, params, tokens, *args, **kwargs):
    if kernels:  # the layers read their nodes through the kernels, but the cross-attention
      # keys and values, projected once per call straight from their float kernels
      params = quantize.dequantize_tree(params, dtype, where=lambda path: (
          "encoder_decoder_attention" in path and path[-2] in ("key", "value")))
      with kernel_layers.kernel_layers():
        result = decoding.generate(module, options, params, tokens, *args, **kwargs)
    else:
      if quantized:  # once per call, ahead of the loop: the barrier keeps XLA from fusing
        # the dequantization into every step's dots
        params = jax.lax.optimization_barrier(quantize.dequantize_tree(params, dtype))
      result = decoding.generate(module, options, params, tokens, *args, **kwargs)
    return result.tokens, result.lengths

  def greedy(params, tokens, stop, min_length, forced):
    return answer(options, params, tokens, stop=stop, min_length=min_length, forced=forced)

  def sample(params, tokens, stop, min_length, forced, seeds, rows, temperature, top_k, top_p):
    return answer(dataclasses.replace(options, method="sample"), params, tokens,
                  decoding.row_keys(seeds, rows), stop=stop, min_length=min_length,
                  temperature=temperature, top_k=top_k, top_p=top_p, forced=forced)

  def beam(params, tokens):
    return answer(dataclasses.replace(options, method="beam", num_beams=num_beams), params,
                  tokens)

  return {"greedy": greedy, "sample": sample, "beam": beam}


def vq_functions(module: MotionVQVAE):
  """(encode, decode) of padded batches: each row's own length (frames / codes) is an input."""
  encode = lambda variables, features, lengths: module.apply(variables, features, lengths,
                                                             method=module.encode)
  decode = lambda variables, codes, lengths: module.apply(variables, codes, lengths,
                                                          method=module.decode)
  return encode, decode


def _export(fn, platforms, *args) -> bytes:
  # The CPU kernels are custom calls of this package, registered by MotionGPT.load.
  allowed = [jax.export.DisabledSafetyCheck.custom_call(t) for t in cpu_kernels.TARGETS]
  return jax.export.export(jax.jit(fn), platforms=platforms, disabled_checks=allowed)(
      *args).serialize()


def export_bundle(tokenizer_dir: str, lm_dir: str, out_dir: str, dtype: str = "float32", *,
                  vocabulary_dir: str | None = None, max_input_length: int = 256,
                  max_decode_length: int = 256, platforms: tuple[str, ...] | None = None,
                  overwrite: bool = False, use_kernels: bool = True) -> str:
  """Writes the bundle of a stage-1 run (`tokenizer_dir`) and an LM (saved or run directory).

  dtype applies to the LM's parameters and activations; the small VQ stays float32. The
  vocabulary comes from `vocabulary_dir`, by default `lm_dir`/assets (where LM runs keep it).
  platforms: those jax.export lowers for (default: this machine's backend). use_kernels=False:
  XLA's dots only, for a CPU bundle that must load where no C++ compiler is. Returns out_dir.
  """
  if dtype not in DTYPES:
    raise ValueError(f"dtype {dtype!r}: expected one of {DTYPES}")
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not overwrite:  # before any work; atomic_dir checks again
    raise FileExistsError(f"{out_dir}: exists; pass overwrite=True to replace it")
  tokenizer = Tokenizer.load(tokenizer_dir)
  module, params = load_lm(lm_dir)
  compute = COMPUTE_DTYPE[dtype]
  module = Transformer(module.config.replace(dtype=compute, dropout_rate=0.0))
  sp_model, vocab_info = _read_vocabulary(vocabulary_dir or os.path.join(lm_dir, "assets"))
  vocab_size = VocabularyCore(sp_model, int(vocab_info["num_motion_tokens"])).vocab_size
  # What the bundle stores is what the exported functions see.
  if dtype == "bfloat16":
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params)
  elif dtype == "int8":
    params = quantize.quantize_tree(jax.device_get(params))
  # On CPU, float32 and int8 bundles compute their large matrices with the CPU kernels (config
  # "cpu_kernels"); elsewhere, or where they cannot be built, float32 is XLA's and int8 is
  # dequantized once per call.
  targets = tuple(platforms or (jax.default_backend(),))
  kernels = (use_kernels and dtype in ("float32", "int8") and targets == ("cpu",)
             and cpu_kernels.available())
  if kernels and dtype == "float32":
    params = kernel_layers.panel_tree(jax.device_get(params))
    # A model without large matrices (tiny sizes) keeps XLA's dots and needs no compiler.
    kernels = any(map(kernel_layers.is_panels,
                      jax.tree.leaves(params, is_leaf=kernel_layers.is_panels)))
  vq_config = tokenizer.module.config

  # Plain writes inside tmp: the swap of the whole directory is what is atomic.
  with atomic_io.atomic_dir(out_dir, overwrite) as tmp:
    _save_tree(os.path.join(tmp, mg.LM_PARAMS), params, dtype)
    _save_tree(os.path.join(tmp, mg.VQ_PARAMS), tokenizer.variables)
    np.save(os.path.join(tmp, mg.MEAN), tokenizer.normalizer.mean, allow_pickle=False)
    np.save(os.path.join(tmp, mg.STD), tokenizer.normalizer.std, allow_pickle=False)
    shutil.copyfile(sp_model, os.path.join(tmp, mg.SENTENCEPIECE))
    _write_json(os.path.join(tmp, mg.VOCABULARY),
                {"sentencepiece_model": mg.SENTENCEPIECE,
                 "num_motion_tokens": int(vocab_info["num_motion_tokens"])})
    _write_json(os.path.join(tmp, mg.CONFIG), {
        "format": mg.FORMAT, "lm": module.config.to_dict(), "vq": vq_config.to_dict(),
        "dataset": tokenizer.dataset, "fps": skeletons.get_skeleton(tokenizer.dataset).fps,
        "feature_dim": vq_config.nfeats, "frames_per_token": vq_config.frames_per_token,
        "dtype": dtype, "compute_dtype": compute, "max_input_length": max_input_length,
        "max_decode_length": max_decode_length, "num_beams": NUM_BEAMS,
        "max_top_k": MAX_TOP_K, "vocab_size": vocab_size, "cpu_kernels": kernels,
        "sources": {"tokenizer": os.path.abspath(tokenizer_dir), "tokenizer_step": tokenizer.step,
                    "lm": os.path.abspath(lm_dir)}})
    for name, blob in _exported(module, params, tokenizer, max_input_length, max_decode_length,
                                vocab_size, dtype == "int8", platforms, kernels).items():
      with open(os.path.join(tmp, mg.function_file(name)), "wb") as f:
        f.write(blob)
    _write_manifest(tmp)
  return out_dir


def _exported(module, params, tokenizer, max_input_length, max_decode_length, vocab_size,
              quantized, platforms, kernels):
  (b,) = jax.export.symbolic_shape("b")
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
  shapes = jax.tree.map(lambda x: spec(x.shape, x.dtype), params)
  tokens, rows = spec((b, max_input_length), jnp.int32), spec((b,), jnp.int32)
  forced = spec((b, max_decode_length), jnp.int32)
  scalar = lambda dtype: spec((), dtype)
  lm = generation_functions(module, max_decode_length, vocab_size, quantized,
                            kernels=kernels)
  vq_encode, vq_decode = vq_functions(tokenizer.module)
  (vb, vl) = jax.export.symbolic_shape("b, l")  # VQ batch and length in tokens
  unit, dim = tokenizer.frames_per_token, tokenizer.module.config.nfeats
  variables = jax.tree.map(lambda x: spec(x.shape, x.dtype), tokenizer.variables)
  return {
      "generate_greedy": _export(lm["greedy"], platforms, shapes, tokens, scalar(jnp.int32),
                                 scalar(jnp.int32), forced),
      "generate_sample": _export(lm["sample"], platforms, shapes, tokens, scalar(jnp.int32),
                                 scalar(jnp.int32), forced, rows, rows, scalar(jnp.float32),
                                 scalar(jnp.int32), scalar(jnp.float32)),
      "generate_beam": _export(lm["beam"], platforms, shapes, tokens),
      "vq_encoder": _export(vq_encode, platforms, variables, spec((vb, unit * vl, dim),
                                                                  jnp.float32), spec((vb,), jnp.int32)),
      "vq_decoder": _export(vq_decode, platforms, variables, spec((vb, vl), jnp.int32),
                            spec((vb,), jnp.int32)),
  }


def _write_json(path: str, value) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)


def _write_manifest(directory: str) -> None:
  files = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    files[name] = {"sha256": atomic_io.file_sha256(path), "bytes": os.path.getsize(path)}
  _write_json(os.path.join(directory, mg.MANIFEST), {
      "format": mg.FORMAT,
      "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "versions": {"jax": jax.__version__, "jaxlib": _version("jaxlib"),
                   "flax": flax.__version__, "mgpt_jax": mgpt_jax.__version__,
                   "numpy": np.__version__},
      "files": files})
