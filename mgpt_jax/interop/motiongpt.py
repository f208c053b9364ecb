"""The official MotionGPT release (`motiongpt_s3_h3d.tar`) <-> our tokenizer and LM directories.

The release is a Lightning checkpoint whose `state_dict` holds
  vae.*                 the motion VQ-VAE, T2M-GPT's layout (see t2m_gpt.py)
  lm.language_model.*   a transformers T5ForConditionalGeneration with an untied lm_head; its
                        tables have len(tokenizer) = 32100 + 515 = 32615 rows while the
                        backbone's config.json says 32128, so dims are read from the tensors
  metrics.*, _losses.*  three copies of the T2M evaluator and the loss modules: ignored
and other top-level keys (epoch, optimizer states, ...) that are ignored. Features are
normalised with the T2M-GPT "meta" mean/std, which are not in the file.

    import_release(ckpt, t5_dir, stats_dir, out)  ->  out/lm (load_lm), out/tokenizer (load_vq)
    export_release(tokenizer_dir, lm_dir, out)    ->  out/motiongpt.tar, out/t5/, out/meta/

The reference code needs transformers 4.x (as it pins): under transformers 5, T5Config always
ties, and the reference's resize_token_embeddings re-ties lm_head to the shared table, so a
strict load of any release (theirs or an export) silently replaces the table with the head.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.data.skeletons import skeleton_for_dim
from mgpt_jax.data.stats import Normalizer
from mgpt_jax.inference.lm_checkpoint import load_lm, save_lm
from mgpt_jax.inference.tokenize_dataset import Tokenizer
from mgpt_jax.interop import t2m_gpt, torch_file
from mgpt_jax.lm import hf_convert
from mgpt_jax.lm.config import T5Config
from mgpt_jax.lm.t5 import Transformer

VAE, LM = "vae.", "lm.language_model."
IGNORED = ("metrics.", "_losses.")
# transformers keeps the shared table under these names too; they are the same tensor.
TIED_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
SPIECE, SENTENCEPIECE, VOCABULARY = "spiece.model", "sentencepiece.model", "vocabulary.json"
CHECKPOINT_NAME = "motiongpt.tar"
LM_DIR, TOKENIZER_DIR = "lm", "tokenizer"


@dataclasses.dataclass
class ImportReport:
  out_dir: str
  vq: object
  lm: T5Config | None
  ignored: dict[str, int]  # prefix -> number of tensors skipped
  bundle: str | None = None
  notes: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    vq = self.vq
    lines = [f"tokenizer: {vq.nfeats}-d features, {vq.num_codes} codes of {vq.code_dim}, "
             f"width {vq.width}, {vq.down_t} x2 downsamplings -> "
             f"{os.path.join(self.out_dir, TOKENIZER_DIR)}"]
    if self.lm is not None:
      lm = self.lm
      lines.append(f"lm: T5 {lm.emb_dim} x {lm.num_encoder_layers}/{lm.num_decoder_layers} layers,"
                   f" {lm.vocab_size} vocabulary rows -> {os.path.join(self.out_dir, LM_DIR)}")
    if self.ignored:
      lines.append("ignored " + ", ".join(f"{n} {p}* tensors" for p, n in self.ignored.items()))
    if self.bundle:
      lines.append(f"bundle -> {self.bundle}")
    return "\n".join(lines + [f"note: {n}" for n in self.notes])


def read_release(checkpoint: dict, path: str) -> tuple[dict, dict, dict[str, int]]:
  """(vae state, lm state, ignored counts) of a loaded release checkpoint, prefixes stripped."""
  state = checkpoint.get("state_dict")
  if not isinstance(state, dict):
    raise ValueError(f"{path}: no 'state_dict'; top-level keys {sorted(map(str, checkpoint))}")
  ignored = {p: sum(str(k).startswith(p) for k in state) for p in IGNORED}
  unknown = [k for k in state if not str(k).startswith((VAE, LM) + IGNORED)]
  if unknown:
    raise ValueError(f"{path}: state_dict keys outside {VAE}*, {LM}*, metrics.*, _losses.*: "
                     f"{unknown[:5]}")
  return (torch_file.to_numpy(state, path, VAE), torch_file.to_numpy(state, path, LM),
          {p: n for p, n in ignored.items() if n})


def _read_hf_config(t5_dir: str) -> dict:
  path = os.path.join(t5_dir, "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: not found; --t5-dir is the backbone directory the release "
                            "was trained from (deps/flan-t5-base)") from None


def lm_from_state(state: dict[str, np.ndarray], hf_config: dict,
                  source: str) -> tuple[T5Config, dict]:
  """(config, params) of the release's T5: architecture from config.json, sizes from tensors."""
  if "shared.weight" not in state:
    raise ValueError(f"{source}: no {LM}shared.weight")
  rows, width = state["shared.weight"].shape
  if hf_config.get("d_model", width) != width:
    raise ValueError(f"{source}: {LM}shared.weight is {rows} x {width} but the backbone's "
                     f"config.json says d_model {hf_config.get('d_model')}: wrong --t5-dir?")
  config, params = hf_convert.from_hf({**hf_config, "vocab_size": int(rows)}, state)
  unexpected = sorted(set(state) - set(hf_convert.hf_names(config)) - set(TIED_ALIASES))
  if unexpected:
    raise ValueError(f"{source}: {len(unexpected)} {LM}* tensors the backbone's config does not "
                     f"have, e.g. {unexpected[:3]}: wrong --t5-dir?")
  tokens = jnp.ones((1, 1), jnp.int32)
  shapes = jax.eval_shape(lambda: Transformer(config).init(
      jax.random.key(0), tokens, tokens, tokens, enable_dropout=False))["params"]
  got = _shapes(params)
  for name, shape in _shapes(shapes).items():
    if got.get(name) != shape:
      raise ValueError(f"{source}: {name} has shape {got.get(name)}, the backbone's config.json "
                       f"implies {shape}: wrong --t5-dir?")
  return config, params


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(k.key for k in path): tuple(np.shape(leaf)) for path, leaf in flat}


def _vocabulary(spiece: str, rows: int, source: str):
  """Our motion vocabulary of the backbone's SentencePiece model, checked against the rows."""
  from mgpt_jax.lm.vocab import MotionVocabulary  # pylint: disable=g-import-not-at-top
  vocab = MotionVocabulary(spiece)
  if vocab.vocab_size != rows:
    raise ValueError(f"{source}: {rows} vocabulary rows, but {spiece} with 100 sentinels and "
                     f"{vocab.num_motion_tokens} motion tokens makes {vocab.vocab_size}")
  return vocab


def _write_vocabulary(directory: str, spiece: str, vocab) -> None:
  os.makedirs(directory, exist_ok=True)
  shutil.copyfile(spiece, os.path.join(directory, SENTENCEPIECE))
  atomic_io.write_text(os.path.join(directory, VOCABULARY), json.dumps(
      {"sentencepiece_model": SENTENCEPIECE, "num_motion_tokens": vocab.num_motion_tokens}) + "\n")


def import_release(checkpoint: str, stats_dir: str, out_dir: str, t5_dir: str | None = None,
                   bundle_dir: str | None = None, vq_only: bool = False,
                   overwrite: bool = False) -> ImportReport:
  """Writes out_dir/tokenizer (and, unless vq_only, out_dir/lm) from a release or T2M-GPT file.

  The checkpoint is the MotionGPT release ({"state_dict": ...}) or, with vq_only, also
  T2M-GPT's VQ-VAE ({"net": ...}). stats_dir holds the meta mean.npy/std.npy (or meta/).
  When t5_dir holds spiece.model, out_dir/lm/assets gets the vocabulary, and bundle_dir,
  if given, an inference bundle.
  """
  checkpoint, stats_dir, out_dir = map(os.fspath, (checkpoint, stats_dir, out_dir))
  if os.path.exists(out_dir) and not overwrite:  # before any work; atomic_dir checks again
    raise FileExistsError(f"{out_dir}: already exists; pass --overwrite to replace it")
  if not vq_only and t5_dir is None:
    raise ValueError("--t5-dir is needed to import the language model (or pass --vq-only)")
  spiece = os.path.join(t5_dir, SPIECE) if t5_dir else None
  if bundle_dir is not None:
    if vq_only:
      raise ValueError("--bundle needs the language model: drop --vq-only")
    if not os.path.isfile(spiece):
      raise FileNotFoundError(f"{spiece}: not found; a bundle needs the backbone's tokenizer")
    if os.path.exists(bundle_dir) and not overwrite:
      raise FileExistsError(f"{bundle_dir}: already exists; pass --overwrite to replace it")

  top = torch_file.load(checkpoint)
  if "state_dict" in top:
    vae_state, lm_state, ignored = read_release(top, checkpoint)
    vq_config, variables = t2m_gpt.state_to_variables(vae_state, checkpoint)
  elif vq_only:
    (vq_config, variables), lm_state, ignored = t2m_gpt.read_net(top, checkpoint), None, {}
  else:
    raise ValueError(f"{checkpoint}: no 'state_dict' (top-level keys {sorted(map(str, top))}); "
                     "for T2M-GPT's net_last.pth pass --vq-only")
  del top
  skeleton = skeleton_for_dim(vq_config.nfeats)
  normalizer = Normalizer.from_dir(stats_dir, "meta", vq_config.nfeats)
  tokenizer = Tokenizer(vq_config, variables, normalizer, skeleton.name)

  lm_config = lm_params = vocab = None
  if not vq_only:
    lm_config, lm_params = lm_from_state(lm_state, _read_hf_config(t5_dir), checkpoint)
    if os.path.isfile(spiece):
      vocab = _vocabulary(spiece, lm_config.vocab_size, checkpoint)
  with atomic_io.atomic_dir(out_dir, overwrite) as tmp:
    tokenizer.save(os.path.join(tmp, TOKENIZER_DIR), stats_kind="meta")
    if lm_params is not None:
      save_lm(os.path.join(tmp, LM_DIR), lm_config, lm_params)
      if vocab is not None:
        _write_vocabulary(os.path.join(tmp, LM_DIR, "assets"), spiece, vocab)
    atomic_io.write_text(os.path.join(tmp, "import.json"), json.dumps({
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": atomic_io.file_sha256(checkpoint),
        "stats_dir": os.path.abspath(stats_dir),
        "t5_dir": os.path.abspath(t5_dir) if t5_dir else None, "ignored": ignored}, indent=2))
  report = ImportReport(os.path.abspath(out_dir), vq_config, lm_config, ignored)
  if lm_config is not None and vocab is None:
    report.notes.append(f"{t5_dir} has no {SPIECE}: {LM_DIR}/ has no vocabulary; give `mgpt "
                        "export` one with --vocabulary-dir")
  if bundle_dir is not None:
    from mgpt_jax.inference.bundle import export_bundle  # pylint: disable=g-import-not-at-top
    report.bundle = export_bundle(os.path.join(out_dir, TOKENIZER_DIR), os.path.join(out_dir, LM_DIR),
                                  bundle_dir, overwrite=overwrite)
  return report


# ------------------------------------------------------------------------------------ export


def _untied(config: T5Config, params: dict) -> tuple[T5Config, dict]:
  """The same function with an explicit lm_head: the release's T5 has one, unscaled."""
  if not config.logits_via_embedding:
    return config, params
  params = jax.tree.map(lambda x: x, params)  # a new tree: the caller's stays as it was
  table = np.asarray(params["token_embedder"]["embedding"], np.float32)
  params["decoder"]["logits_dense"] = {"kernel": table.T * np.float32(config.emb_dim ** -0.5)}
  return config.replace(logits_via_embedding=False), params


def _cut_rows(params: dict, rows: int) -> dict:
  params = jax.tree.map(np.asarray, params)
  params["token_embedder"]["embedding"] = params["token_embedder"]["embedding"][:rows]
  head = params["decoder"]["logits_dense"]
  head["kernel"] = head["kernel"][:, :rows]
  return params


def _yaml(entries: dict, indent: str = "") -> str:
  lines = []
  for key, value in entries.items():
    if isinstance(value, dict):
      lines.append(f"{indent}{key}:")
      lines.append(_yaml(value, indent + "  "))
    else:
      lines.append(f"{indent}{key}: {json.dumps(value) if isinstance(value, str) else value}")
  return "\n".join(lines)


def export_release(tokenizer_dir: str, lm_dir: str, out_dir: str,
                   vocabulary_dir: str | None = None, overwrite: bool = False) -> str:
  """Our tokenizer + LM in the official layout, for the reference code's demo and renderer.

  out_dir/motiongpt.tar   {"state_dict": vae.*, lm.language_model.*} (TEST.CHECKPOINTS)
  out_dir/t5/             the backbone directory (config.json, weights, spiece.model) that
                          the reference's `lm.params.model_path` points at
  out_dir/meta/           mean.npy / std.npy (float64), the stats the tokenizer normalises with
  out_dir/vq.yaml, lm.yaml  the reference's model configs for these sizes
  Tables are cut to the vocabulary's size (len(tokenizer) in the reference); without a
  vocabulary (lm_dir/assets or vocabulary_dir) all rows are kept.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir}: already exists; pass --overwrite to replace it")
  tokenizer = Tokenizer.load(tokenizer_dir)
  module, params = load_lm(lm_dir)
  config, params = _untied(module.config, jax.device_get(params))
  vocabulary_dir = vocabulary_dir or os.path.join(lm_dir, "assets")
  spiece = os.path.join(vocabulary_dir, SENTENCEPIECE)
  rows = config.vocab_size
  if os.path.isfile(os.path.join(vocabulary_dir, VOCABULARY)):
    with open(os.path.join(vocabulary_dir, VOCABULARY), encoding="utf-8") as f:
      info = json.load(f)
    spiece = os.path.join(vocabulary_dir, info["sentencepiece_model"])
    from mgpt_jax.lm.vocab import MotionVocabulary  # pylint: disable=g-import-not-at-top
    rows = MotionVocabulary(spiece, info["num_motion_tokens"]).vocab_size
    if info["num_motion_tokens"] != tokenizer.module.config.num_codes + 3:
      raise ValueError(f"{vocabulary_dir}: {info['num_motion_tokens']} motion tokens, but the "
                       f"reference adds codes + 3 = {tokenizer.module.config.num_codes + 3}")
    if rows > config.vocab_size:
      raise ValueError(f"{lm_dir}: {config.vocab_size} vocabulary rows, fewer than the "
                       f"{rows} ids of {spiece}")
  else:
    spiece = None
  params = _cut_rows(params, rows)
  config = config.replace(vocab_size=rows)
  vq = tokenizer.module.config
  lm_state = hf_convert.params_to_hf(params, config)
  state = {VAE + k: v for k, v in t2m_gpt.variables_to_state(vq, tokenizer.variables).items()}
  state.update({LM + k: v for k, v in lm_state.items()})

  with atomic_io.atomic_dir(out_dir, overwrite) as tmp:
    torch_file.save(os.path.join(tmp, CHECKPOINT_NAME), {"state_dict": state})
    t5 = os.path.join(tmp, "t5")
    hf_convert.write_hf_checkpoint(t5, params, config)
    if spiece is not None:
      shutil.copyfile(spiece, os.path.join(t5, SPIECE))
      atomic_io.write_text(os.path.join(t5, "tokenizer_config.json"), json.dumps(
          {"tokenizer_class": "T5Tokenizer", "extra_ids": 100, "legacy": True,
           "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}, indent=2))
    meta = os.path.join(tmp, "meta")
    os.makedirs(meta)
    np.save(os.path.join(meta, "mean.npy"), tokenizer.normalizer.mean.astype(np.float64))
    np.save(os.path.join(meta, "std.npy"), tokenizer.normalizer.std.astype(np.float64))
    atomic_io.write_text(os.path.join(tmp, "vq.yaml"), _yaml({
        "target": "mGPT.archs.mgpt_vq.VQVae",
        "params": {"quantizer": "ema_reset", "code_num": vq.num_codes, "code_dim": vq.code_dim,
                   "output_emb_width": vq.code_dim, "down_t": vq.down_t, "stride_t": 2,
                   "width": vq.width, "depth": vq.depth,
                   "dilation_growth_rate": vq.dilation_growth_rate, "norm": "None",
                   "activation": "relu", "nfeats": vq.nfeats}}) + "\n")
    atomic_io.write_text(os.path.join(tmp, "lm.yaml"), _yaml({
        "target": "mGPT.archs.mgpt_lm.MLM",
        "params": {"model_type": "t5", "model_path": os.path.join(out_dir, "t5"),
                   "motion_codebook_size": vq.num_codes}}) + "\n")
  return out_dir
