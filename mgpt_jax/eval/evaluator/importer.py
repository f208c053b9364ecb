"""Imports the official T2M evaluator (`text_mot_match/model/finest.tar`) and GloVe subset.

The checkpoint is read with `torch.load(weights_only=True)` and the GloVe word list and
index with our opcode-level pickle parser, so importing executes nothing from the files.
Sizes are read off the checkpoint (feature_dim from movement_encoder.main.0.weight, whose
input is D-4) and every tensor is then checked against the shapes they imply.
"""
from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data.formats import load_npy
from mgpt_jax.data.skeletons import get_skeleton
from mgpt_jax.data.stats import Normalizer
from mgpt_jax.eval.evaluator import safe_pickle
from mgpt_jax.eval.evaluator.networks import NUM_CONTACT_DIMS, EvaluatorConfig
from mgpt_jax.eval.evaluator.store import save_evaluator, unflatten_params
from mgpt_jax.eval.evaluator.word_vectors import POS_CLASSES

MODULES = ("text_encoder", "movement_encoder", "motion_encoder")
GLOVE_PREFIX = "our_vab"


def _linear(ours: str, theirs: str):
  return [(f"{ours}/kernel", f"{theirs}.weight", "linear"),
          (f"{ours}/bias", f"{theirs}.bias", None)]


def _gru(ours: str, theirs: str):
  rows = [(f"{ours}/initial_state", "hidden", "hidden")]
  for direction, suffix in (("forward", ""), ("backward", "_reverse")):
    rows += [(f"{ours}/{direction}/kernel_ih", f"{theirs}.weight_ih_l0{suffix}", "linear"),
             (f"{ours}/{direction}/kernel_hh", f"{theirs}.weight_hh_l0{suffix}", "linear"),
             (f"{ours}/{direction}/bias_ih", f"{theirs}.bias_ih_l0{suffix}", None),
             (f"{ours}/{direction}/bias_hh", f"{theirs}.bias_hh_l0{suffix}", None)]
  return rows


def _head(ours: str, theirs: str):
  return (_linear(f"{ours}/dense_0", f"{theirs}.0")
          + [(f"{ours}/norm/scale", f"{theirs}.1.weight", None),
             (f"{ours}/norm/bias", f"{theirs}.1.bias", None)]
          + _linear(f"{ours}/dense_1", f"{theirs}.3"))


# (our path under the module, the torch state-dict key, how to convert)
KEY_MAP = {
    "text_encoder": (_linear("pos_emb", "pos_emb") + _linear("input_emb", "input_emb")
                     + _gru("gru", "gru") + _head("output_net", "output_net")),
    "movement_encoder": ([("conv_0/kernel", "main.0.weight", "conv"),
                          ("conv_0/bias", "main.0.bias", None),
                          ("conv_1/kernel", "main.3.weight", "conv"),
                          ("conv_1/bias", "main.3.bias", None)]
                         + _linear("out_net", "out_net")),
    "motion_encoder": (_linear("input_emb", "input_emb") + _gru("gru", "gru")
                       + _head("output_net", "output_net")),
}


def _convert(array: np.ndarray, how: str | None) -> np.ndarray:
  if how == "linear":  # torch (out, in) -> (in, out)
    return array.T
  if how == "conv":  # torch (out, in, k) -> (k, in, out)
    return array.transpose(2, 1, 0)
  if how == "hidden":  # (2, 1, H) -> (2, H)
    return array.reshape(array.shape[0], array.shape[-1])
  return array


def expected_torch_shapes(config: EvaluatorConfig) -> dict[str, dict[str, tuple[int, ...]]]:
  """{module: {torch key: shape}} of the official modules built with `config`'s sizes."""
  c = config
  d_in = c.feature_dim - NUM_CONTACT_DIMS

  def linear(name, n_in, n_out):
    return {f"{name}.weight": (n_out, n_in), f"{name}.bias": (n_out,)}

  def gru(hidden, n_in):
    out = {"hidden": (2, 1, hidden)}
    for suffix in ("", "_reverse"):
      out.update({f"gru.weight_ih_l0{suffix}": (3 * hidden, n_in),
                  f"gru.weight_hh_l0{suffix}": (3 * hidden, hidden),
                  f"gru.bias_ih_l0{suffix}": (3 * hidden,),
                  f"gru.bias_hh_l0{suffix}": (3 * hidden,)})
    return out

  def head(hidden, out):
    return {**linear("output_net.0", 2 * hidden, hidden), "output_net.1.weight": (hidden,),
            "output_net.1.bias": (hidden,), **linear("output_net.3", hidden, out)}

  return {
      "text_encoder": {**linear("pos_emb", c.num_pos, c.word_dim),
                       **linear("input_emb", c.word_dim, c.text_hidden),
                       **gru(c.text_hidden, c.text_hidden), **head(c.text_hidden, c.embed_dim)},
      "movement_encoder": {"main.0.weight": (c.movement_hidden, d_in, 4),
                           "main.0.bias": (c.movement_hidden,),
                           "main.3.weight": (c.movement_latent, c.movement_hidden, 4),
                           "main.3.bias": (c.movement_latent,),
                           **linear("out_net", c.movement_latent, c.movement_latent)},
      "motion_encoder": {**linear("input_emb", c.movement_latent, c.motion_hidden),
                         **gru(c.motion_hidden, c.motion_hidden),
                         **head(c.motion_hidden, c.embed_dim)},
  }


def _load_checkpoint(path: str) -> dict:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError("importing the T2M evaluator needs PyTorch to read finest.tar (pip "
                      "install torch --index-url https://download.pytorch.org/whl/cpu)") from None
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: checkpoint not found (expected checkpoints/<t2m|kit>/"
                            "text_mot_match/model/finest.tar)")
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
          ValueError, TypeError, AttributeError) as e:  # what a refused or corrupt file raises
    raise ValueError(f"{path}: cannot be read as a weights-only torch checkpoint: {e}") from None
  if not isinstance(checkpoint, dict):
    raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
  missing = [m for m in MODULES if not isinstance(checkpoint.get(m), dict)]
  if missing:
    raise ValueError(f"{path}: missing state dicts {missing}; found keys "
                     f"{sorted(map(str, checkpoint))} (expected {list(MODULES)}, as in "
                     "text_mot_match/model/finest.tar)")
  out = {}
  for module in MODULES:
    out[module] = {}
    for key, tensor in checkpoint[module].items():
      if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{path}: {module}.{key} is a {type(tensor).__name__}, expected a tensor")
      out[module][key] = tensor.detach().cpu().float().numpy()
  out["epoch"] = checkpoint.get("epoch")
  return out


def _shape(state: dict, module: str, key: str, ndim: int, path: str) -> tuple[int, ...]:
  if key not in state[module]:
    raise ValueError(f"{path}: {module} lacks {key!r}, needed to read the model's sizes; "
                     f"it has {sorted(state[module])}")
  shape = state[module][key].shape
  if len(shape) != ndim:
    raise ValueError(f"{path}: {module}.{key} has shape {shape}, expected {ndim} dims")
  return shape


def infer_config(state: dict, path: str, pack_motion: bool = True) -> EvaluatorConfig:
  """Sizes read off a few tensors; `check_state` then checks all the others against them."""
  conv0 = _shape(state, "movement_encoder", "main.0.weight", 3, path)
  conv1 = _shape(state, "movement_encoder", "main.3.weight", 3, path)
  pos = _shape(state, "text_encoder", "pos_emb.weight", 2, path)
  text_hh = _shape(state, "text_encoder", "gru.weight_hh_l0", 2, path)
  motion_hh = _shape(state, "motion_encoder", "gru.weight_hh_l0", 2, path)
  out = _shape(state, "text_encoder", "output_net.3.weight", 2, path)
  if pos[1] != len(POS_CLASSES):
    raise ValueError(f"{path}: text_encoder.pos_emb.weight {pos} takes {pos[1]} POS classes, "
                     f"the word vectorizer gives {len(POS_CLASSES)}")
  return EvaluatorConfig(feature_dim=conv0[1] + NUM_CONTACT_DIMS, word_dim=pos[0],
                         num_pos=pos[1], text_hidden=text_hh[1], motion_hidden=motion_hh[1],
                         movement_hidden=conv0[0], movement_latent=conv1[0], embed_dim=out[0],
                         pack_motion=pack_motion)


def check_state(state: dict, config: EvaluatorConfig, path: str) -> None:
  """Every key of the official layout present with its shape, and no others."""
  problems = []
  for module, shapes in expected_torch_shapes(config).items():
    got = state[module]
    missing = sorted(set(shapes) - set(got))
    unexpected = sorted(set(got) - set(shapes))
    if missing:
      problems.append(f"{module}: missing keys {missing}")
    if unexpected:
      problems.append(f"{module}: unexpected keys {unexpected}")
    for key in sorted(set(shapes) & set(got)):
      if tuple(got[key].shape) != shapes[key]:
        problems.append(f"{module}.{key}: shape {tuple(got[key].shape)}, expected {shapes[key]}")
  if problems:
    raise ValueError(f"{path}: not the T2M evaluator layout for {config.feature_dim}-d "
                     "features:\n  " + "\n  ".join(problems))


def convert_state(state: dict) -> dict:
  """The torch state dicts as our Flax `params` tree."""
  flat = {}
  for module, rows in KEY_MAP.items():
    for ours, theirs, how in rows:
      array = _convert(state[module][theirs], how)
      flat[f"{module}/{ours}"] = np.ascontiguousarray(array, np.float32)
  return unflatten_params(flat)


def read_glove(glove_dir: str, prefix: str = GLOVE_PREFIX) -> tuple[list[str], np.ndarray]:
  """(words, vectors) from <prefix>_{data.npy, words.pkl, idx.pkl}; w's vector is data[idx[w]]."""
  data_path, words_path, idx_path = (os.path.join(glove_dir, f"{prefix}_{s}")
                                     for s in ("data.npy", "words.pkl", "idx.pkl"))
  data = load_npy(data_path)
  if data.ndim != 2:
    raise ValueError(f"{data_path}: expected (N, dim) word vectors, got shape {data.shape}")
  words = safe_pickle.load(words_path)
  if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
    raise ValueError(f"{words_path}: expected a pickled list of str")
  index = safe_pickle.load(idx_path)
  if not isinstance(index, dict):
    raise ValueError(f"{idx_path}: expected a pickled dict word -> row, got {type(index).__name__}")
  rows = []
  for word in words:
    row = index.get(word)
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < data.shape[0]:
      raise ValueError(f"{idx_path}: word {word!r} maps to {row!r}, expected a row of "
                       f"{data_path} in [0, {data.shape[0]})")
    rows.append(row)
  return list(words), data[np.asarray(rows, np.int64)].astype(np.float32)


def import_t2m_evaluator(checkpoint, glove_dir, stats_dir, out_dir, dataset: str = "humanml3d",
                         pack_motion: bool = True, overwrite: bool = False,
                         stats_kind: str = "meta", glove_prefix: str = GLOVE_PREFIX) -> str:
  """finest.tar + GloVe subset + the evaluator's mean/std -> our evaluator directory.

  stats_dir holds the stats the evaluator was trained with (mean.npy/std.npy, also
  looked for in stats_dir/meta). pack_motion=False reproduces MotionGPT's unpacked
  motion GRU. Returns out_dir.
  """
  checkpoint, glove_dir, stats_dir = map(os.fspath, (checkpoint, glove_dir, stats_dir))
  skeleton = get_skeleton(dataset)
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir}: already exists; pass overwrite=True to replace it")
  state = _load_checkpoint(checkpoint)
  config = infer_config(state, checkpoint, pack_motion)
  if config.feature_dim != skeleton.feature_dim:
    raise ValueError(f"{checkpoint}: an evaluator for {config.feature_dim}-d features, but dataset "
                     f"{skeleton.name!r} has {skeleton.feature_dim}-d features")
  check_state(state, config, checkpoint)
  words, vectors = read_glove(glove_dir, glove_prefix)
  if vectors.shape[1] != config.word_dim:
    raise ValueError(f"{glove_dir}: {vectors.shape[1]}-d word vectors, the checkpoint expects "
                     f"{config.word_dim}-d")
  normalizer = Normalizer.from_dir(stats_dir, stats_kind, dim=config.feature_dim)
  provenance = {"checkpoint": os.path.abspath(checkpoint), "checkpoint_sha256": atomic_io.file_sha256(checkpoint),
                "epoch": state["epoch"] if isinstance(state["epoch"], int) else None,
                "glove_dir": os.path.abspath(glove_dir), "glove_prefix": glove_prefix,
                "stats_dir": os.path.abspath(stats_dir), "stats_kind": stats_kind,
                "pack_motion": pack_motion}
  return save_evaluator(out_dir, config, convert_state(state), words, vectors,
                        normalizer, skeleton.name, provenance, overwrite=overwrite)
