"""MotionGPT from an inference bundle alone: text -> motion and motion -> text.

    model = MotionGPT.load("/bundles/mgpt_h3d")
    [(features, codes)] = model.text_to_motion(["a person walks forward"], seed=0)
    [caption] = model.motion_to_text([features])

A bundle (written by bundle.export_bundle) holds parameters as .npz, the vocabulary, the
normalisation stats, config.json, manifest.json with sha256 checksums, and jax.export
functions. Loading uses only jax.export.deserialize, numpy and the SentencePiece vocabulary:
no Flax modules, no training code, no pickles. Generation is a Python loop over the exported
decode step; sampling and greedy choice happen on the host in numpy.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import ml_dtypes
import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.lm import motion_span

FORMAT = "mgpt_jax.bundle/1"
MANIFEST, CONFIG = "manifest.json", "config.json"
LM_PARAMS, VQ_PARAMS = "lm_params.npz", "vq_variables.npz"
MEAN, STD = "mean.npy", "std.npy"
SENTENCEPIECE, VOCABULARY = "sentencepiece.model", "vocabulary.json"
FUNCTIONS = ("encoder", "init_cache", "decode_step", "vq_encoder", "vq_decoder")
BF16_SUFFIX = "::bfloat16"  # npz cannot hold bfloat16 without pickles: stored as uint16 bits
EOS_ID, PAD_ID = 1, 0
# tasks.templates.EVAL_TEMPLATES, copied: the bundle must not import the task registry.
T2M_PROMPT = "Generate motion: {}"
M2T_PROMPT = "Generate text: {}"
PREDICT_PROMPT = "Predict motion: {}"
INBETWEEN_PROMPT = "Complete the masked motion: {}"


class BundleError(ValueError):
  """A bundle that is incomplete, corrupted or made for something else."""


def function_file(name: str) -> str:
  return f"{name}.jaxexport"


def verify(bundle_dir: str) -> dict:
  """The manifest, after checking that every file it lists is present with its checksum."""
  path = os.path.join(bundle_dir, MANIFEST)
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise BundleError(f"{path}: missing; is {bundle_dir} an inference bundle?") from None
  except (ValueError, UnicodeDecodeError) as e:
    raise BundleError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    found = manifest.get("format") if isinstance(manifest, dict) else manifest
    raise BundleError(f"{path}: format {found!r}, expected {FORMAT!r}")
  files = manifest.get("files")
  if not isinstance(files, dict):
    raise BundleError(f"{path}: no 'files' table of checksums")
  # Every file of the bundle must be covered: an unlisted file could be edited unnoticed.
  for name in sorted(os.listdir(bundle_dir)):
    if name != MANIFEST and not name.startswith(".") and name not in files:
      raise BundleError(f"{os.path.join(bundle_dir, name)}: not listed in {MANIFEST}; the "
                        "bundle was modified")
  for name in (CONFIG, VOCABULARY, LM_PARAMS, VQ_PARAMS, MEAN, STD,
               *map(function_file, FUNCTIONS)):
    if name not in files:
      raise BundleError(f"{path}: does not list {name}, which every bundle has")
  for name, entry in files.items():
    file = os.path.join(bundle_dir, name)
    if not os.path.exists(file):
      raise BundleError(f"{file}: listed in {MANIFEST} but missing")
    actual = atomic_io.file_sha256(file)
    if actual != entry["sha256"]:
      raise BundleError(f"{file}: sha256 {actual} does not match {entry['sha256']} in "
                        f"{MANIFEST}; the bundle is corrupted or was modified")
  return manifest


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  """{'a/b/c': array} of a nested dict of arrays."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, name + "/"))
    else:
      flat[name] = np.asarray(value)
  return flat


def read_tree(path: str) -> dict:
  """The nested dict of arrays an npz of `flatten`ed names holds (bfloat16 restored)."""
  tree: dict = {}
  with np.load(path, allow_pickle=False) as data:
    for name in data.files:
      array = data[name]
      if name.endswith(BF16_SUFFIX):
        name, array = name[:-len(BF16_SUFFIX)], array.view(ml_dtypes.bfloat16)
      *parents, leaf = name.split("/")
      node = tree
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = array
  return tree


def _deserialize(bundle_dir: str, name: str):
  path = os.path.join(bundle_dir, function_file(name))
  with open(path, "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  backend = jax.default_backend()
  if backend not in exported.platforms:
    raise BundleError(f"{path}: exported for {exported.platforms}, not for this {backend!r} "
                      "backend; re-export with platforms including it")
  return exported


class MotionGPT:
  """A loaded bundle: `text_to_motion`, `motion_to_text`."""

  def __init__(self, bundle_dir: str, config: dict, manifest: dict, vocab, lm_params, vq_vars,
               mean, std, functions: dict):
    self.bundle_dir, self.config, self.manifest, self.vocab = bundle_dir, config, manifest, vocab
    self.mean, self.std = mean, std
    device = jax.devices()[0]
    self.lm_params = jax.device_put(lm_params, device)
    self.vq_vars = jax.device_put(vq_vars, device)
    self.exported = functions
    self._fns = {name: jax.jit(exp.call) for name, exp in functions.items()}
    # The cache is consumed by each step: donating it lets XLA update it in place.
    self._fns["decode_step"] = jax.jit(functions["decode_step"].call, donate_argnums=(1,))

  @classmethod
  def load(cls, bundle_dir: str, check: bool = True) -> MotionGPT:
    # Imported here: vocab pulls in TensorFlow/seqio, which the format helpers above do not need.
    from mgpt_jax.lm.vocab import MotionVocabulary  # pylint: disable=g-import-not-at-top
    bundle_dir = os.path.abspath(bundle_dir)
    manifest = verify(bundle_dir) if check else {}
    with open(os.path.join(bundle_dir, CONFIG), encoding="utf-8") as f:
      config = json.load(f)
    with open(os.path.join(bundle_dir, VOCABULARY), encoding="utf-8") as f:
      vocab_info = json.load(f)
    vocab = MotionVocabulary(os.path.join(bundle_dir, vocab_info["sentencepiece_model"]),
                             vocab_info["num_motion_tokens"])
    load = lambda name: np.load(os.path.join(bundle_dir, name), allow_pickle=False)
    functions = {name: _deserialize(bundle_dir, name) for name in FUNCTIONS}
    return cls(bundle_dir, config, manifest, vocab, read_tree(os.path.join(bundle_dir, LM_PARAMS)),
               read_tree(os.path.join(bundle_dir, VQ_PARAMS)), load(MEAN), load(STD), functions)

  # ---------------------------------------------------------------------- pieces

  @property
  def frames_per_token(self) -> int:
    return int(self.config["frames_per_token"])

  def encode(self, tokens: np.ndarray):
    return self._fns["encoder"](self.lm_params, tokens)

  def decode_step(self, cache, encoded, encoder_tokens, tokens):
    """(logits (B, vocab) float32, new cache) for `tokens` (B, 1); the cache is consumed."""
    return self._fns["decode_step"](self.lm_params, cache, encoded, encoder_tokens, tokens)

  def init_cache(self, encoder_tokens):
    return self._fns["init_cache"](encoder_tokens)

  def codes_to_features(self, codes: np.ndarray) -> np.ndarray:
    """Codes (B, L) -> features (B, 4L, D) in dataset units."""
    out = self._fns["vq_decoder"](self.vq_vars, np.asarray(codes, np.int32))
    return np.asarray(out) * self.std + self.mean

  def features_to_codes(self, features: np.ndarray) -> np.ndarray:
    """Features (B, T, D) in dataset units, T a multiple of 4 -> codes (B, T/4) int32."""
    normalized = ((np.asarray(features, np.float32) - self.mean) / self.std).astype(np.float32)
    return np.asarray(self._fns["vq_encoder"](self.vq_vars, normalized), np.int32)

  def _prompt_tokens(self, prompts: Sequence[str]) -> np.ndarray:
    length = int(self.config["max_input_length"])
    rows = [list(self.vocab.encode(p)) + [EOS_ID] for p in prompts]
    tokens = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
      if len(row) > length:
        raise ValueError(f"prompt {i} is {len(row)} tokens; the bundle's encoder takes at most "
                         f"max_input_length={length}: {prompts[i][:80]!r}")
      tokens[i, :len(row)] = row
    return tokens

  def generate(self, prompts: Sequence[str], max_length: int, rng=None, top_k: int = 50,
               temperature: float = 1.0) -> list[np.ndarray]:
    """Answer ids per prompt (up to and including EOS): sampled with `rng`, else greedy."""
    limit = int(self.config["max_decode_length"])
    if not 1 <= max_length <= limit:
      raise ValueError(f"max_length {max_length}: expected 1 <= max_length <= {limit}, the "
                       "decode length the bundle was exported with")
    tokens = self._prompt_tokens(prompts)
    batch = len(prompts)
    encoded, cache = self.encode(tokens), self.init_cache(tokens)
    prev = np.full((batch, 1), PAD_ID, np.int32)
    out = np.zeros((batch, max_length), np.int32)
    done = np.zeros(batch, bool)
    vocab_size = self.vocab.vocab_size  # rows past it are padding of the embedding table
    for i in range(max_length):
      logits, cache = self.decode_step(cache, encoded, tokens, prev)
      logits = np.asarray(logits, np.float32)[:, :vocab_size]
      token = np.argmax(logits, -1) if rng is None else _sample(logits, rng, top_k, temperature)
      token = np.where(done, PAD_ID, token).astype(np.int32)
      out[:, i], done = token, done | (token == EOS_ID)
      prev = token[:, None]
      if done.all():
        break
    answers = []
    for row in out:
      ends = np.flatnonzero(row == EOS_ID)
      answers.append(row[:ends[0] + 1] if ends.size else row)
    return answers

  # ---------------------------------------------------------------------- tasks

  def text_to_motion(self, texts: Sequence[str], seed: int = 0, max_length: int | None = None,
                     top_k: int = 50, temperature: float = 1.0
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features (4L, D) in dataset units, codes (L,)) per text; sampled as the reference
    (top-k 50, temperature 1); an answer without a motion span gives codes [0]."""
    max_length = max_length or int(self.config["max_decode_length"])
    prompts = [T2M_PROMPT.format(text) for text in texts]
    answers = self.generate(prompts, max_length, np.random.default_rng(seed), top_k, temperature)
    return self.answers_to_motions(answers)

  def motion_codes(self, motion, i: int = 0) -> np.ndarray:
    """Codes (L,) of features (T, D) in dataset units, or integer codes as they are."""
    motion = np.asarray(motion)
    if motion.ndim == 1 and np.issubdtype(motion.dtype, np.integer):
      return motion
    if motion.ndim == 2 and motion.shape[1] == self.mean.shape[0]:
      usable = motion.shape[0] // self.frames_per_token * self.frames_per_token
      if not usable:
        raise ValueError(f"motion {i} has {motion.shape[0]} frames: expected >= "
                         f"{self.frames_per_token}")
      return self.features_to_codes(motion[None, :usable])[0]
    raise ValueError(f"motion {i} of shape {motion.shape}, dtype {motion.dtype}: expected "
                     f"features (T, {self.mean.shape[0]}) or integer codes (L,)")

  def answers_to_motions(self, answers) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, codes) of each answer's motion span ([0] where it has none)."""
    results = []
    for ids in answers:
      codes = motion_span.ids_to_codes(ids, self.vocab)
      codes = np.minimum(codes, int(self.config["vq"]["num_codes"]) - 1)  # model may overshoot
      results.append((self.codes_to_features(codes[None])[0], codes))
    return results

  def motion_to_text(self, motions: Sequence[np.ndarray], max_length: int = 40) -> list[str]:
    """A caption per motion, greedy; a motion is features (T, D) or codes (L,) int."""
    prompts = [M2T_PROMPT.format(motion_span.codes_to_string(self.motion_codes(m, i)))
               for i, m in enumerate(motions)]
    return [self.vocab.decode(ids).strip() for ids in self.generate(prompts, max_length)]

  def predict(self, motions: Sequence[np.ndarray], seed: int = 0, max_length: int | None = None,
              top_k: int = 50, temperature: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first 20 % of each motion continued: (features, codes) of prefix + continuation.

    The prefix is the given motion's own codes (the reference's evaluation compares the
    continuation alone with the ground truth from frame 0, its quirk §11.3)."""
    max_length = max_length or int(self.config["max_decode_length"])
    prefixes = [motion_span.prediction_prompt_codes(self.motion_codes(m, i))
                for i, m in enumerate(motions)]
    prompts = [PREDICT_PROMPT.format(motion_span.codes_to_string(p)) for p in prefixes]
    answers = self.generate(prompts, max_length, np.random.default_rng(seed), top_k, temperature)
    results = []
    for prefix, (_, continuation) in zip(prefixes, self.answers_to_motions(answers)):
      codes = np.concatenate([prefix, continuation]).astype(np.int32)
      results.append((self.codes_to_features(codes[None])[0], codes))
    return results

  def inbetween(self, motions: Sequence[np.ndarray], seed: int = 0, max_length: int | None = None,
                top_k: int = 50, temperature: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each motion's middle half filled in: the model's whole answer (as the reference)."""
    max_length = max_length or int(self.config["max_decode_length"])
    prompts = [INBETWEEN_PROMPT.format(motion_span.masked_string(self.motion_codes(m, i)))
               for i, m in enumerate(motions)]
    answers = self.generate(prompts, max_length, np.random.default_rng(seed), top_k, temperature)
    return self.answers_to_motions(answers)


def _sample(logits: np.ndarray, rng: np.random.Generator, top_k: int, temperature: float):
  """A token per row from the top-k of softmax(logits / temperature)."""
  logits = logits / temperature
  k = min(top_k, logits.shape[-1]) if top_k else logits.shape[-1]
  ids = np.argpartition(-logits, k - 1, axis=-1)[:, :k]
  top = np.take_along_axis(logits, ids, -1)
  probs = np.exp(top - top.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.array([row[rng.choice(k, p=p)] for row, p in zip(ids, probs)])

