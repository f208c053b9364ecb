"""MotionGPT from an inference bundle alone: text -> motion and motion -> text.

    model = MotionGPT.load("/bundles/mgpt_h3d")
    [(features, codes)] = model.text_to_motion(["a person walks forward"], seed=0)
    [caption] = model.motion_to_text([features])

A bundle (written by bundle.export_bundle) holds parameters as .npz, the vocabulary, the
normalisation stats, config.json, manifest.json with sha256 checksums, and jax.export
functions. Loading uses only jax.export.deserialize, numpy and SentencePiece (vocab_core):
no Flax modules, no training code, no TensorFlow or seqio, no pickles.

Generation is one device call per batch: the exported function runs the encoder and the whole
decode loop (greedy, sampling or beam search) and one (B, L) array of ids comes back. Batches
are padded to a power of two (at most MAX_BATCH rows; longer lists go in chunks) and motions to
a few lengths (CODE_BUCKETS), so each function compiles a bounded number of times
(`compile_counts`). Sampled row i of a call draws with the key of (seed, i), whatever batch it
is sent in, so results do not depend on how a list is split.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import ml_dtypes
import numpy as np

from mgpt_jax import atomic_io
from mgpt_jax.inference import cpu_kernels
from mgpt_jax.lm import motion_span
from mgpt_jax.lm.vocab_core import VocabularyCore

FORMAT = "mgpt_jax.bundle/2"  # 2: generation takes the answer starts (forced)
MANIFEST, CONFIG = "manifest.json", "config.json"
LM_PARAMS, VQ_PARAMS = "lm_params.npz", "vq_variables.npz"
MEAN, STD = "mean.npy", "std.npy"
SENTENCEPIECE, VOCABULARY = "sentencepiece.model", "vocabulary.json"
FUNCTIONS = ("generate_greedy", "generate_sample", "generate_beam", "vq_encoder", "vq_decoder")
MAX_BATCH = 32  # rows per device call; batches are padded to a power of two up to this
CODE_BUCKETS = (8, 16, 32, 64, 128, 256)  # motion lengths in codes; longer: multiples of 256
CHAIN_PREFIX_CODES = 8  # codes a long motion's next segment continues from
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
    raise BundleError(f"{path}: format {found!r}, expected {FORMAT!r}; a bundle from another "
                      "mgpt_jax version: export it again with `mgpt export`")
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


def min_rows(config: dict) -> int:
  """The fewest rows a generation call is padded to. XLA:CPU sends a one-row bfloat16 product
  down a slow matrix-vector path: a (1, 768) x (768, 3072) product took 9x as long as a two-row
  one on the project's Xeon (AMX), so bfloat16 bundles answer in pairs."""
  return 2 if config["compute_dtype"] != "float32" else 1


def batch_bucket(n: int) -> int:
  """Rows a batch of n is padded to: the next power of two (n <= MAX_BATCH)."""
  return 1 << max(n - 1, 0).bit_length()


def code_bucket(length: int) -> int:
  """Codes a motion of `length` codes is padded to."""
  for bucket in CODE_BUCKETS:
    if length <= bucket:
      return bucket
  return -(-length // CODE_BUCKETS[-1]) * CODE_BUCKETS[-1]


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([array, np.repeat(array[-1:], rows - len(array), 0)]) if rows > len(
      array) else array


class MotionGPT:
  """A loaded bundle: `text_to_motion`, `motion_to_text`, `predict`, `inbetween`."""

  def __init__(self, bundle_dir: str, config: dict, manifest: dict, vocab, lm_params, vq_vars,
               mean, std, functions: dict):
    self.bundle_dir, self.config, self.manifest, self.vocab = bundle_dir, config, manifest, vocab
    self.mean, self.std = mean, std
    self.min_rows = min_rows(config)
    device = jax.devices()[0]
    self.lm_params = jax.device_put(lm_params, device)
    self.vq_vars = jax.device_put(vq_vars, device)
    self.exported = functions
    self._fns = {name: jax.jit(exp.call) for name, exp in functions.items()}

  @classmethod
  def load(cls, bundle_dir: str, check: bool = True) -> MotionGPT:
    bundle_dir = os.path.abspath(bundle_dir)
    manifest = verify(bundle_dir) if check else {}
    with open(os.path.join(bundle_dir, CONFIG), encoding="utf-8") as f:
      config = json.load(f)
    missing = [name for name in FUNCTIONS if not os.path.exists(
        os.path.join(bundle_dir, function_file(name)))]
    if missing:
      raise BundleError(f"{bundle_dir}: no {', '.join(map(function_file, missing))}; a bundle "
                        "from an older mgpt_jax: export it again with `mgpt export`")
    with open(os.path.join(bundle_dir, VOCABULARY), encoding="utf-8") as f:
      vocab_info = json.load(f)
    vocab = VocabularyCore(os.path.join(bundle_dir, vocab_info["sentencepiece_model"]),
                           vocab_info["num_motion_tokens"])
    if config.get("cpu_kernels", config.get("int8_kernel")):  # int8_kernel: before 2026-12-02
      try:
        cpu_kernels.register()
      except cpu_kernels.KernelUnavailable as e:
        raise BundleError(f"{bundle_dir}: a bundle for the CPU kernels, which cannot be built "
                          f"here ({e}): install g++ (or set CXX), or export it with "
                          "--no-cpu-kernels") from None
    load = lambda name: np.load(os.path.join(bundle_dir, name), allow_pickle=False)
    functions = {name: _deserialize(bundle_dir, name) for name in FUNCTIONS}
    return cls(bundle_dir, config, manifest, vocab, read_tree(os.path.join(bundle_dir, LM_PARAMS)),
               read_tree(os.path.join(bundle_dir, VQ_PARAMS)), load(MEAN), load(STD), functions)

  # ---------------------------------------------------------------------- pieces

  @property
  def frames_per_token(self) -> int:
    return int(self.config["frames_per_token"])

  @property
  def fps(self) -> float:
    return float(self.config["fps"])

  @property
  def num_beams(self) -> int:
    """The beams its beam search was exported with (bundles before the field: 4)."""
    return int(self.config.get("num_beams", 4))

  def compile_counts(self) -> dict[str, int]:
    """How many programs each exported function has compiled in this process."""
    return {name: fn._cache_size() for name, fn in self._fns.items()}  # pylint: disable=protected-access

  def decode_codes(self, codes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Features (4 L_i, D) in dataset units of each code array (L_i,), in padded batches."""
    codes = [np.asarray(c, np.int32).reshape(-1) for c in codes]
    features = self._bucketed("vq_decoder", codes, [len(c) for c in codes])
    return [f * self.std + self.mean for f in features]

  def encode_motions(self, motions: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Codes (T_i / 4,) of each features array (T_i, D) in dataset units (T_i a multiple of 4)."""
    unit = self.frames_per_token
    normalized = [((np.asarray(m, np.float32) - self.mean) / self.std).astype(np.float32)
                  for m in motions]
    for i, m in enumerate(normalized):
      if len(m) % unit or not len(m):
        raise ValueError(f"motion {i} has {len(m)} frames: expected a positive multiple of {unit}")
    codes = self._bucketed("vq_encoder", normalized, [len(m) // unit for m in normalized])
    return [c.astype(np.int32) for c in codes]

  def _bucketed(self, name: str, items: list, num_codes: list[int]) -> list[np.ndarray]:
    """The VQ function over rows grouped by code_bucket, MAX_BATCH per call; each row comes back
    as it would alone (the network masks past each row's length), trimmed to its length."""
    unit = self.frames_per_token
    per_code = 1 if name == "vq_decoder" else unit  # input rows per code
    out: list = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(num_codes):
      groups.setdefault(code_bucket(max(n, 1)), []).append(i)
    for bucket, rows in sorted(groups.items()):
      for start in range(0, len(rows), MAX_BATCH):
        chunk = rows[start:start + MAX_BATCH]
        first = items[chunk[0]]
        batch = np.zeros((batch_bucket(len(chunk)), bucket * per_code) + first.shape[1:],
                         first.dtype)
        lengths = np.full(len(batch), len(first), np.int32)
        for k, i in enumerate(chunk):
          batch[k, :len(items[i])], lengths[k] = items[i], len(items[i])
        result = np.asarray(self._fns[name](self.vq_vars, batch, lengths))
        for k, i in enumerate(chunk):
          out[i] = result[k, :num_codes[i] * (unit if name == "vq_decoder" else 1)]
    return out

  def codes_to_features(self, codes: np.ndarray) -> np.ndarray:
    """Codes (B, L) -> features (B, 4L, D) in dataset units."""
    return np.stack(self.decode_codes(list(np.asarray(codes, np.int32))))

  def features_to_codes(self, features: np.ndarray) -> np.ndarray:
    """Features (B, T, D) in dataset units, T a multiple of 4 -> codes (B, T/4) int32."""
    return np.stack(self.encode_motions(list(np.asarray(features, np.float32))))

  def prompt_tokens(self, prompts: Sequence[str]) -> np.ndarray:
    """(B, max_input_length) int32 ids of the prompts, EOS-terminated and zero-padded."""
    length = int(self.config["max_input_length"])
    rows = [list(self.vocab.encode(p)) + [EOS_ID] for p in prompts]
    tokens = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
      if len(row) > length:
        raise ValueError(f"prompt {i} is {len(row)} tokens; the bundle's encoder takes at most "
                         f"max_input_length={length}: {prompts[i][:80]!r}")
      tokens[i, :len(row)] = row
    return tokens

  _prompt_tokens = prompt_tokens  # the name earlier callers used

  def generate(self, prompts: Sequence[str], max_length: int, seed: int | None = None, *,
               top_k: int = 50, temperature: float = 1.0, top_p: float = 1.0,
               num_beams: int | None = None, rows: Sequence[int] | None = None,
               min_length: int = 0, starts: Sequence[Sequence[int]] | None = None
               ) -> list[np.ndarray]:
    """Answer ids per prompt (up to and including EOS): sampled when `seed` is given, else
    greedy, or beam search (the bundle's num_beams) with num_beams. Row i draws with the key of
    (seed, rows[i]) (default: i); no EOS before min_length tokens (greedy and sampling);
    starts[i]: ids answer i begins with, the model continuing after them (greedy and sampling).
    One device call per MAX_BATCH prompts."""
    limit = int(self.config["max_decode_length"])
    if not 1 <= max_length <= limit:
      raise ValueError(f"max_length {max_length}: expected 1 <= max_length <= {limit}, the "
                       "decode length the bundle was exported with")
    if num_beams is not None and num_beams != self.num_beams:
      raise ValueError(f"num_beams {num_beams}: the bundle was exported with "
                       f"{self.num_beams} beams")
    max_top_k = int(self.config.get("max_top_k", 256))
    if seed is not None and (temperature <= 0 or not 0 <= top_k <= max_top_k
                             or not 0 < top_p <= 1):
      raise ValueError(f"temperature {temperature}, top_k {top_k}, top_p {top_p}: expected "
                       f"temperature > 0, 0 <= top_k <= {max_top_k}, 0 < top_p <= 1")
    ids, lengths = self.generate_ids(self.prompt_tokens(prompts), max_length, seed, top_k=top_k,
                                     temperature=temperature, top_p=top_p, num_beams=num_beams,
                                     rows=rows, min_length=min_length,
                                     forced=self.forced_ids(starts, len(prompts)))
    return [row[:n] for row, n in zip(ids, lengths)]

  def forced_ids(self, starts: Sequence[Sequence[int]] | None, batch: int) -> np.ndarray | None:
    """generate_ids' `forced`: (batch, max_decode_length), each start's ids, then -1."""
    if starts is None:
      return None
    forced = np.full((batch, int(self.config["max_decode_length"])), -1, np.int32)
    for row, start in zip(forced, starts):
      if len(start) > len(row):
        raise ValueError(f"an answer start of {len(start)} ids: expected at most {len(row)}")
      row[:len(start)] = start
    return forced

  def generate_ids(self, tokens: np.ndarray, max_length: int, seed: int | None = None, *,
                   top_k: int = 50, temperature: float = 1.0, top_p: float = 1.0,
                   num_beams: int | None = None, rows: Sequence[int] | None = None,
                   min_length: int = 0, forced: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(ids (B, max_decode_length), lengths (B,) <= max_length) for prompt ids (B,
    max_input_length) as prompt_tokens makes them; forced: forced_ids; the other arguments
    are generate's."""
    if forced is not None and num_beams is not None:
      raise ValueError("answer starts with beam search: expected greedy or sampling")
    answers, lengths = [], []
    rows = np.arange(len(tokens)) if rows is None else np.asarray(rows)
    if forced is None:
      forced = np.full((len(tokens), int(self.config["max_decode_length"])), -1, np.int32)
    for start in range(0, len(tokens), MAX_BATCH):
      chunk = tokens[start:start + MAX_BATCH]
      padded = _pad_rows(chunk, batch_bucket(max(len(chunk), self.min_rows)))
      start_ids = _pad_rows(forced[start:start + MAX_BATCH], len(padded))
      if num_beams is not None:
        ids, n = self._fns["generate_beam"](self.lm_params, padded)
      elif seed is None:
        ids, n = self._fns["generate_greedy"](self.lm_params, padded, np.int32(max_length),
                                              np.int32(min_length), start_ids)
      else:
        keys = _pad_rows(rows[start:start + MAX_BATCH].astype(np.int32), len(padded))
        ids, n = self._fns["generate_sample"](
            self.lm_params, padded, np.int32(max_length), np.int32(min_length), start_ids,
            np.full(len(padded), seed, np.int32),
            keys, np.float32(temperature), np.int32(top_k), np.float32(top_p))
      answers.append(np.asarray(ids)[:len(chunk)])
      lengths.append(np.minimum(np.asarray(n)[:len(chunk)], max_length))
    return np.concatenate(answers), np.concatenate(lengths)

  # ---------------------------------------------------------------------- tasks

  def text_to_motion(self, texts: Sequence[str], seed: int | None = 0,
                     max_length: int | None = None,
                     top_k: int = 50, temperature: float = 1.0, seconds: float | None = None,
                     num_beams: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features (4L, D) in dataset units, codes (L,)) per text; sampled as the reference
    (top-k 50, temperature 1), greedy with seed None, beam search with num_beams (the
    bundle's); an answer without a motion span gives codes [0].

    seconds: a motion of that length, beyond the 196 training frames if asked: the text's
    motion is continued with the prediction task from its last CHAIN_PREFIX_CODES codes until
    it is long enough, and all codes are decoded at once (the joins are decoded as any other
    neighbouring codes, so root and pose carry on without a jump)."""
    max_length = max_length or int(self.config["max_decode_length"])
    prompts = [T2M_PROMPT.format(text) for text in texts]
    sampling = {"top_k": top_k, "temperature": temperature}
    if num_beams is not None:
      seed = None  # beam search is deterministic; a continuation is then greedy
    answers = self.generate(prompts, max_length, seed, num_beams=num_beams, **sampling)
    codes = [self.answer_codes(ids) for ids in answers]
    if seconds is not None:
      from mgpt_jax.inference import chain  # pylint: disable=g-import-not-at-top
      target = max(1, int(np.ceil(seconds * self.fps / self.frames_per_token)))
      codes, _ = chain.extend(self, codes, target, seed, max_length, **sampling)
    return list(zip(self.decode_codes(codes), codes))

  def motion_codes(self, motion, i: int = 0) -> np.ndarray:
    """Codes (L,) of features (T, D) in dataset units, or integer codes as they are."""
    return self.motions_codes([motion], first=i)[0]

  def motions_codes(self, motions: Sequence, first: int = 0) -> list[np.ndarray]:
    """motion_codes of each motion, the features encoded in padded batches."""
    out, features = list(motions), {}
    for i, motion in enumerate(motions):
      motion = np.asarray(motion)
      if motion.ndim == 1 and np.issubdtype(motion.dtype, np.integer):
        out[i] = motion
      elif motion.ndim == 2 and motion.shape[1] == self.mean.shape[0]:
        usable = motion.shape[0] // self.frames_per_token * self.frames_per_token
        if not usable:
          raise ValueError(f"motion {first + i} has {motion.shape[0]} frames: expected >= "
                           f"{self.frames_per_token}")
        features[i] = motion[:usable]
      else:
        raise ValueError(f"motion {first + i} of shape {motion.shape}, dtype {motion.dtype}: "
                         f"expected features (T, {self.mean.shape[0]}) or integer codes (L,)")
    for i, codes in zip(features, self.encode_motions(list(features.values()))):
      out[i] = codes
    return out

  def answer_codes(self, ids) -> np.ndarray:
    """The codes of an answer's motion span ([0] where it has none)."""
    codes = motion_span.ids_to_codes(ids, self.vocab)
    return np.minimum(codes, int(self.config["vq"]["num_codes"]) - 1)  # model may overshoot

  def answers_to_motions(self, answers) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, codes) of each answer's motion span ([0] where it has none)."""
    codes = [self.answer_codes(ids) for ids in answers]
    return list(zip(self.decode_codes(codes), codes))

  def motion_to_text(self, motions: Sequence[np.ndarray], max_length: int = 40,
                     num_beams: int | None = None) -> list[str]:
    """A caption per motion, greedy (or beam search); a motion is features (T, D) or codes (L,)."""
    prompts = [M2T_PROMPT.format(motion_span.codes_to_string(c))
               for c in self.motions_codes(motions)]
    return [self.vocab.decode(ids).strip()
            for ids in self.generate(prompts, max_length, num_beams=num_beams)]

  def predict(self, motions: Sequence[np.ndarray], seed: int = 0, max_length: int | None = None,
              top_k: int = 50, temperature: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first 20 % of each motion continued: (features, codes) of prefix + continuation.

    The prefix's rows are the given features unchanged (its codes when codes were given). The
    prompt shows the given motion's own codes (the reference's evaluation compares the
    continuation alone with the ground truth from frame 0, its quirk §11.3)."""
    prefixes = [motion_span.prediction_prompt_codes(c) for c in self.motions_codes(motions)]
    continuations = self.continue_codes(prefixes, seed, max_length, top_k=top_k,
                                        temperature=temperature)
    codes = [np.concatenate([p, c]).astype(np.int32) for p, c in zip(prefixes, continuations)]
    kept = [((0, len(p)),) for p in prefixes]
    return list(zip(self._keep_given(motions, self.decode_codes(codes), kept), codes))

  def _keep_given(self, motions, decoded: list[np.ndarray], kept) -> list[np.ndarray]:
    """The decoded features with the rows of each kept code span [a, b) set to the given
    features (given codes have no rows of their own: those stay decoded)."""
    unit = self.frames_per_token
    for motion, features, spans in zip(motions, decoded, kept):
      motion = np.asarray(motion)
      if motion.ndim != 2:
        continue
      for a, b in spans:
        end = min(b * unit, len(features), len(motion))
        features[a * unit:end] = motion[a * unit:end]
    return decoded

  def continue_codes(self, prefixes: Sequence[np.ndarray], seed: int | None,
                     max_length: int | None = None, rows: Sequence[int] | None = None,
                     **sampling) -> list[np.ndarray]:
    """The codes the prediction task answers after each prefix (the continuation alone)."""
    max_length = max_length or int(self.config["max_decode_length"])
    prompts = [PREDICT_PROMPT.format(motion_span.codes_to_string(p)) for p in prefixes]
    answers = self.generate(prompts, max_length, seed, rows=rows, **sampling)
    return [self.answer_codes(ids) for ids in answers]

  def inbetween(self, motions: Sequence[np.ndarray], seed: int = 0, max_length: int | None = None,
                top_k: int = 50, temperature: float = 1.0,
                keep_given: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each motion's middle half filled in: (features, codes) as long as the given motion.

    keep_given (default): the answer is made to start with the given head (a decoder prompt),
    so the model fills the gap from where the motion really is; its codes at the gap's
    positions (the last repeated if it stops short) go between the given head and tail and
    all are decoded together, so the decoder sees both sides of each join; outside the gap the
    given feature rows are returned unchanged, as an animator's keyframes are.
    keep_given=False returns the model's whole free answer decoded, as the reference does."""
    max_length = max_length or int(self.config["max_decode_length"])
    given = self.motions_codes(motions)
    gaps = [motion_span.gap(len(c)) for c in given]
    prompts = [INBETWEEN_PROMPT.format(motion_span.masked_string(c)) for c in given]
    # som, then the head's codes (codes_to_ids ends the span with eom: dropped)
    starts = ([motion_span.codes_to_ids(c[:head], self.vocab)[:-1]
               for c, (head, _) in zip(given, gaps)] if keep_given else None)
    answers = self.generate(prompts, max_length, seed, top_k=top_k, temperature=temperature,
                            starts=starts)
    if not keep_given:
      return self.answers_to_motions(answers)
    codes = [motion_span.fill_gap(c, self.answer_codes(ids)) for c, ids in zip(given, answers)]
    kept = [((0, head), (tail, len(c))) for c, (head, tail) in zip(codes, gaps)]
    return list(zip(self._keep_given(motions, self.decode_codes(codes), kept), codes))
