"""Autoregressive decoding of the T5 inside one jitted while loop: greedy, sampling, beam search.

    result = decode(module, params, encoder_input_tokens, max_decode_length=64, method="beam")
    result.tokens, result.lengths  # (batch, max_len) without the start token, pad after EOS;
                                   # tokens up to and including EOS, or max_len
    result.scores  # greedy/sample: sum of log-probs; beam: log-prob / length penalty

Beam search uses T5X's length penalty ((5 + len) / 6) ** alpha (default alpha 0.6, as T5X) and
finishes beams as Hugging Face does: an EOS candidate joins the pool only if it ranks among the
top num_beams of its step, so that num_beams=1 is greedy. Log-probs are those of the masked
(vocab_limit, ignore_eos, constraint), renormalised distribution, before temperature/top-k/p.

Token choice (argmax, temperature / top-k / top-p sampling, per-row keys) lives in sampling.py;
`generate` is the whole decode for callers that trace it themselves (the bundle's jax.export,
with the batch symbolic and the step limit and sampling settings as call-time inputs).

Speed: the encoder runs once; the self-attention cache is the loop carry; the cross-attention
keys and values are projected once before the loop and enter every step as invariants with
`cross_filled` a constant, so XLA drops the layer's lax.cond and beams never gather them; no
host sync until the loop ends, as soon as every sequence is done. jax.jit caches the compiled
function per (module, options, shapes); params are a traced (possibly sharded) argument.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

from flax import traverse_util
import jax
import jax.numpy as jnp

from mgpt_jax.lm.sampling import (CANDIDATES, NEG_INF, argmax_and_logsumexp,  # noqa: F401
                                  filter_logits, fold_step, row_keys, sample_token)

PAD_ID = 0  # also the decoder start token
METHODS = ("greedy", "sample", "beam")
_CROSS_INVARIANTS = ("cross_key", "cross_value")  # layers.MultiHeadAttention's cross cache
_CROSS_FLAG = "cross_filled"

# logits_fn(tokens (N, 1) int32, step () int32, cache) -> (logits (N, vocab) float32, cache)
LogitsFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


class DecodeResult(NamedTuple):
  tokens: jax.Array  # (batch, max_len) int32
  lengths: jax.Array  # (batch,) int32
  scores: jax.Array  # (batch,) float32
  beam_tokens: jax.Array | None = None  # (batch, beams, max_len), best first
  beam_lengths: jax.Array | None = None  # (batch, beams)
  beam_scores: jax.Array | None = None  # (batch, beams); about NEG_INF for unfilled slots


@dataclasses.dataclass(frozen=True)
class MotionSpanConstraint:
  """Masks logits so that the answer is exactly: som, codes (>= min_codes), eom, EOS.

  Codes occupy positions 1 .. step-1 while inside the span, so the step count alone says how
  many codes precede; eom is forced at step max_len - 2 so that EOS still fits.
  """
  som_id: int
  eom_id: int
  code_start: int  # id of motion code 0
  num_codes: int = 512
  min_codes: int = 1
  eos_id: int = 1

  @classmethod
  def from_offset(cls, motion_offset: int, num_codes: int = 512, **kwargs):
    """The layout of vocab.py: codes at motion_offset + k, then som and eom."""
    return cls(som_id=motion_offset + num_codes, eom_id=motion_offset + num_codes + 1,
               code_start=motion_offset, num_codes=num_codes, **kwargs)

  def __post_init__(self):
    if self.num_codes < 1 or self.min_codes < 0:
      raise ValueError(f"num_codes {self.num_codes} and min_codes {self.min_codes}: expected "
                       "num_codes >= 1 and min_codes >= 0")
    codes = range(self.code_start, self.code_start + self.num_codes)
    for name in ("som_id", "eom_id", "eos_id"):
      if getattr(self, name) in codes:
        raise ValueError(f"{name} {getattr(self, name)} lies inside the motion codes "
                         f"[{codes.start}, {codes.stop}): expected a separate id")
    if len({self.som_id, self.eom_id, self.eos_id}) != 3:
      raise ValueError(f"som_id {self.som_id}, eom_id {self.eom_id} and eos_id {self.eos_id} "
                       "must differ")

  @property
  def max_id(self) -> int:
    return max(self.som_id, self.eom_id, self.eos_id, self.code_start + self.num_codes - 1)

  def min_length(self) -> int:
    return self.min_codes + 3  # som, codes, eom, EOS

  def allowed(self, prev, step, vocab_size: int, max_len: int):
    """(N, vocab) bool: the tokens that keep the span well formed after `prev` (N,) at `step`."""
    ids = jnp.arange(vocab_size)[None]
    is_code = lambda x: (x >= self.code_start) & (x < self.code_start + self.num_codes)
    prev = prev[:, None]
    first = step == 0
    in_span = ~first & ((prev == self.som_id) | is_code(prev))
    after_eom = ~first & (prev == self.eom_id)
    force_eom = step >= max_len - 2
    eom_ok = in_span & (force_eom | (step - 1 >= self.min_codes))
    # Outside the grammar (a finished beam, say) only EOS: the sequence ends at once.
    stray = ~(first | in_span | after_eom)
    return ((first & (ids == self.som_id)) | (in_span & ~force_eom & is_code(ids))
            | (eom_ok & (ids == self.eom_id)) | ((after_eom | stray) & (ids == self.eos_id)))

  def apply(self, logits, prev, step, max_len: int):
    return jnp.where(self.allowed(prev, step, logits.shape[-1], max_len), logits, NEG_INF)


@dataclasses.dataclass(frozen=True)
class LogitsProcessor:
  """The masks every method applies before choosing: vocab_limit, ignore_eos, constraint."""
  max_len: int
  eos_id: int = 1
  vocab_limit: int | None = None
  constraint: MotionSpanConstraint | None = None
  ignore_eos: bool = False

  def __call__(self, logits, prev, step, min_length=None):
    """min_length: a traced step count before which EOS is masked too."""
    logits = logits.astype(jnp.float32)
    # One select by column, which XLA fuses into what reads the logits. Column writes
    # (dynamic_update_slice) were not done in place on the CPU kernels' logits: XLA copied
    # the (N, vocab) array four times a step (0.7 ms of small's 20 ms at batch 32).
    column = jnp.arange(logits.shape[-1])
    masked = jnp.zeros(logits.shape[-1:], bool)
    if self.vocab_limit is not None and self.vocab_limit < logits.shape[-1]:
      masked |= column >= self.vocab_limit
    if self.ignore_eos:
      masked |= column == self.eos_id
    if min_length is not None:
      masked |= (column == self.eos_id) & (step < min_length)
    logits = jnp.where(masked, NEG_INF, logits)
    if self.constraint is not None:
      logits = self.constraint.apply(logits, prev, step, self.max_len)
    return logits


def sample_loop(logits_fn: LogitsFn, cache, *, batch_size: int, max_len: int,
                process: Callable, eos_id: int = 1, rng=None, temperature=0.0,
                top_k=0, top_p=1.0, stop=None, forced=None,
                greedy_choice: Callable = argmax_and_logsumexp) -> DecodeResult:
  """Greedy (temperature 0) or sampled decoding; jittable, one while loop over the steps.

  rng: a key, or (batch,) keys (see row_keys). stop: a traced step count <= max_len after which
  the loop ends (rows not done by then keep length max_len and PAD after `stop`). forced:
  (batch, max_len) ids, -1 where free: where set, step i emits forced[:, i] whatever the model
  prefers (a decoder prompt: the answer's known start), scored by the model's log-prob.
  """
  greedy = isinstance(temperature, (int, float)) and temperature == 0.0

  def body(state):
    i, tokens, prev, done, lengths, scores, cache = state
    logits, cache = logits_fn(prev[:, None], i, cache)
    logits = process(logits, prev, i)
    if greedy:
      token, lse = greedy_choice(logits)
    else:
      token = sample_token(logits, fold_step(rng, i), temperature, top_k, top_p)
      lse = jax.nn.logsumexp(logits, axis=-1)
    if forced is not None:
      wanted = jax.lax.dynamic_index_in_dim(forced, i, axis=1, keepdims=False)
      token = jnp.where(wanted >= 0, wanted, token)
    logp = jnp.take_along_axis(logits, token[:, None], -1)[:, 0] - lse
    token = jnp.where(done, PAD_ID, token)
    scores = scores + jnp.where(done, 0.0, logp)
    tokens = jax.lax.dynamic_update_index_in_dim(tokens, token, i, axis=1)
    ended = ~done & (token == eos_id)
    lengths = jnp.where(ended, i + 1, lengths)
    return i + 1, tokens, token, done | ended, lengths, scores, cache

  limit = max_len if stop is None else jnp.minimum(stop, max_len)

  def cond(state):
    return (state[0] < limit) & ~jnp.all(state[3])

  b = batch_size
  state = (jnp.int32(0), jnp.zeros((b, max_len), jnp.int32), jnp.full((b,), PAD_ID, jnp.int32),
           jnp.zeros((b,), bool), jnp.full((b,), max_len, jnp.int32),
           jnp.zeros((b,), jnp.float32), cache)
  _, tokens, _, _, lengths, scores, _ = jax.lax.while_loop(cond, body, state)
  return DecodeResult(tokens, lengths, scores)


def length_penalty(length, alpha: float):
  """T5X's (and GNMT's) ((5 + length) / 6) ** alpha."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def beam_search_loop(logits_fn: LogitsFn, cache, *, batch_size: int, num_beams: int,
                     max_len: int, process: Callable, eos_id: int = 1,
                     alpha: float = 0.6) -> DecodeResult:
  """Beam search; `cache` rows are batch-major (b * num_beams + k) and reordered each step.

  Candidates are the top 2K of all beam extensions. One that ends in EOS (or reaches max_len)
  joins the finished pool, scored log-prob / length_penalty, if it ranks among the top K; the
  best K non-EOS candidates live on. An example is done when its pool is full and no live beam
  can beat the pool's worst even at max_len (exact: log-probs only fall, penalties only grow).
  """
  b, k, n = batch_size, num_beams, batch_size * num_beams
  rows = jnp.arange(b)[:, None] * k
  take = lambda x, idx: jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), 1)

  def reorder(x, idx):
    return jnp.take(x, idx, axis=0) if x.ndim and x.shape[0] == n else x

  def body(state):
    i, live, live_lp, fin, fin_scores, fin_lens, _, cache = state
    prev = jax.lax.dynamic_index_in_dim(live, jnp.maximum(i - 1, 0), axis=2, keepdims=False)
    prev = jnp.where(i == 0, PAD_ID, prev).reshape(n)
    logits, cache = logits_fn(prev[:, None], i, cache)
    logp = jax.nn.log_softmax(process(logits, prev, i), axis=-1)
    vocab = logp.shape[-1]
    total = (logp.reshape(b, k, vocab) + live_lp[:, :, None]).reshape(b, k * vocab)
    top_lp, top_idx = jax.lax.top_k(total, 2 * k)
    beam, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    seqs = jax.lax.dynamic_update_index_in_dim(take(live, beam), token[:, :, None], i, axis=2)
    is_eos = token == eos_id
    ends = (jnp.arange(2 * k) < k) & (is_eos | (i == max_len - 1))
    cand_scores = jnp.where(ends, top_lp / length_penalty(i + 1, alpha), NEG_INF)
    pool_scores, pick = jax.lax.top_k(jnp.concatenate([fin_scores, cand_scores], 1), k)
    fin = take(jnp.concatenate([fin, seqs], 1), pick)
    fin_lens = take(jnp.concatenate([fin_lens, jnp.full((b, 2 * k), i + 1, jnp.int32)], 1), pick)
    live_lp, pick = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_lp), k)
    live = take(seqs, pick)
    source = (rows + take(beam, pick)).reshape(n)
    cache = jax.tree.map(lambda x: reorder(x, source), cache)
    done = jnp.all(live_lp[:, 0] / length_penalty(max_len, alpha) < pool_scores[:, -1])
    return i + 1, live, live_lp, fin, pool_scores, fin_lens, done, cache

  def cond(state):
    return (state[0] < max_len) & ~state[6]

  live_lp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  state = (jnp.int32(0), jnp.zeros((b, k, max_len), jnp.int32), live_lp,
           jnp.zeros((b, k, max_len), jnp.int32), jnp.full((b, k), NEG_INF, jnp.float32),
           jnp.full((b, k), max_len, jnp.int32), jnp.array(False), cache)
  _, _, _, fin, fin_scores, fin_lens, _, _ = jax.lax.while_loop(cond, body, state)
  return DecodeResult(fin[:, 0], fin_lens[:, 0], fin_scores[:, 0], fin, fin_lens, fin_scores)


def init_cache(module, batch_size: int, encoder_length: int, max_len: int):
  """The decode cache of `module` as zeros (indices 0, flags False), without running it."""
  enc = jax.ShapeDtypeStruct((batch_size, encoder_length), jnp.int32)
  dec = jax.ShapeDtypeStruct((batch_size, max_len), jnp.int32)
  shapes = jax.eval_shape(
      lambda e, d: module.init(jax.random.key(0), e, d, d, decode=True, enable_dropout=False),
      enc, dec)["cache"]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def model_logits_fn(module, params, encoded, encoder_input_tokens, max_len: int):
  """(logits_fn, carried cache) for `module`, with the cross-attention cache precomputed.

  The priming call only feeds cross_key/cross_value, so XLA drops the rest of it; in the loop
  the cross entries are invariants and cross_filled a constant, so nothing is re-projected.
  """
  n, s = encoder_input_tokens.shape
  flat = traverse_util.flatten_dict(init_cache(module, n, s, max_len))

  def step(tokens, cache_flat):
    logits, mutated = module.apply(
        {"params": params, "cache": traverse_util.unflatten_dict(cache_flat)}, encoded,
        encoder_input_tokens, tokens, tokens, enable_dropout=False, decode=True,
        max_decode_length=max_len, mutable=["cache"], method=module.decode)
    return logits[:, 0], traverse_util.flatten_dict(mutated["cache"])

  primed = step(jnp.zeros((n, 1), jnp.int32), flat)[1]
  cross = {path: primed[path] for path in flat if path[-1] in _CROSS_INVARIANTS}
  flags = {path: jnp.ones_like(x) for path, x in flat.items() if path[-1] == _CROSS_FLAG}
  carried = {path: x for path, x in flat.items() if path not in cross and path not in flags}
  # A (batch, length, heads, kv) cross cache is transposed to heads-major by the attention's
  # dot in every step (a copy of every layer's keys and values). Kept heads-major here and
  # turned back inside the loop, the two transposes cancel; the barrier ties the turn-back to
  # the step so that XLA cannot hoist it out of the loop and materialise it again.
  heads_minor = {p for p, x in cross.items() if x.ndim == 4 and x.shape[1:3] == (
      s, module.config.num_heads)}
  swap = lambda x: x.transpose(0, 2, 1, 3)
  cross = {p: swap(x) if p in heads_minor else x for p, x in cross.items()}

  def logits_fn(tokens, i, cache):
    del i  # the cache's own index tracks the position
    tokens, invariant = jax.lax.optimization_barrier((tokens, cross))
    invariant = {p: swap(x) if p in heads_minor else x for p, x in invariant.items()}
    logits, mutated = step(tokens, {**cache, **invariant, **flags})
    return logits, {path: mutated[path] for path in cache}

  return logits_fn, carried


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """Static decoding settings: a new value compiles a new function."""
  max_decode_length: int
  method: str = "greedy"
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  num_beams: int = 4
  length_penalty: float = 0.6
  eos_id: int = 1
  vocab_limit: int | None = None
  constraint: MotionSpanConstraint | None = None
  ignore_eos: bool = False  # never stop at EOS (fixed-length runs, benchmarks)
  # (first argmax, logsumexp) of a greedy step's masked logits (N, V); CPU bundles pass their
  # kernel's (inference/cpu_kernels.py).
  greedy_choice: Callable = argmax_and_logsumexp

  def __post_init__(self):
    span, limit = self.constraint, self.vocab_limit
    for bad, message in [
        (self.method not in METHODS, f"method {self.method!r}: expected one of {METHODS}"),
        (self.max_decode_length < 1, f"max_decode_length {self.max_decode_length}: expected >= 1"),
        (self.temperature < 0, f"temperature {self.temperature}: expected >= 0"),
        (self.top_k < 0, f"top_k {self.top_k}: expected >= 0 (0 disables it)"),
        (not 0 < self.top_p <= 1, f"top_p {self.top_p}: expected 0 < top_p <= 1"),
        (self.num_beams < 1, f"num_beams {self.num_beams}: expected >= 1"),
        # Negative alphas would favour short answers and break the early-stop bound.
        (self.length_penalty < 0, f"length_penalty {self.length_penalty}: expected >= 0"),
        (limit is not None and limit <= self.eos_id,
         f"vocab_limit {limit}: expected > eos_id {self.eos_id}"),
        (span and self.ignore_eos, "ignore_eos with a constraint: the constraint ends every "
         "answer with EOS; expected one of them"),
        (span and self.max_decode_length < span.min_length(), f"max_decode_length "
         f"{self.max_decode_length}: the motion span needs >= {span and span.min_length()}"),
        (span and limit is not None and span.max_id >= limit,
         f"constraint id {span and span.max_id} >= vocab_limit {limit}"),
    ]:
      if bad:
        raise ValueError(message)


def generate(module, options: DecodeOptions, params, encoder_input_tokens, rng=None, *,
             stop=None, min_length=None, temperature=None, top_k=None, top_p=None,
             forced=None) -> DecodeResult:
  """The whole decode, unjitted, for callers that trace it themselves (the bundle's jax.export).

  stop, min_length (no EOS before that step), temperature, top_k and top_p may be traced and
  override `options` (see sample_loop and sample_token: a traced top_k is at most 256); rng may
  be (batch,) keys (row_keys); forced (greedy and sample): sample_loop's decoder prompt.
  """
  return _decode(module, options, params, encoder_input_tokens, rng,
                 {"stop": stop, "min_length": min_length, "temperature": temperature,
                  "top_k": top_k, "top_p": top_p, "forced": forced})


def _decode(module, options: DecodeOptions, params, encoder_input_tokens, rng,
            dynamic=None) -> DecodeResult:
  o = options
  dynamic = {k: v for k, v in (dynamic or {}).items() if v is not None}
  vocab = module.config.vocab_size
  for name, value in (("vocab_limit", o.vocab_limit),
                      ("constraint id", o.constraint and o.constraint.max_id + 1)):
    if value is not None and value > vocab:
      raise ValueError(f"{name} {value} exceeds the model's vocab_size {vocab}")
  tokens = jnp.asarray(encoder_input_tokens, jnp.int32)
  if tokens.ndim != 2:
    raise ValueError(f"encoder_input_tokens of shape {tokens.shape}: expected (batch, length)")
  batch, max_len = tokens.shape[0], o.max_decode_length
  encoded = module.apply({"params": params}, tokens, enable_dropout=False, method=module.encode)
  process = LogitsProcessor(max_len, o.eos_id, o.vocab_limit, o.constraint, o.ignore_eos)
  if "min_length" in dynamic:  # no EOS before step min_length (transformers' min_new_tokens)
    process = functools.partial(process, min_length=dynamic["min_length"])
  if o.method == "beam":
    if 2 * o.num_beams > vocab:
      raise ValueError(f"num_beams {o.num_beams}: expected <= vocab_size / 2 = {vocab // 2}")
    encoded = jnp.repeat(encoded, o.num_beams, axis=0)
    tokens = jnp.repeat(tokens, o.num_beams, axis=0)
    logits_fn, cache = model_logits_fn(module, params, encoded, tokens, max_len)
    return beam_search_loop(logits_fn, cache, batch_size=batch, num_beams=o.num_beams,
                            max_len=max_len, process=process, eos_id=o.eos_id,
                            alpha=o.length_penalty)
  logits_fn, cache = model_logits_fn(module, params, encoded, tokens, max_len)
  temperature = dynamic.get("temperature", o.temperature) if o.method == "sample" else 0.0
  return sample_loop(logits_fn, cache, batch_size=batch, max_len=max_len, process=process,
                     eos_id=o.eos_id, rng=rng, temperature=temperature,
                     top_k=dynamic.get("top_k", o.top_k), top_p=dynamic.get("top_p", o.top_p),
                     stop=dynamic.get("stop"), forced=dynamic.get("forced"),
                     greedy_choice=o.greedy_choice)


_decode_jit = jax.jit(_decode, static_argnames=("module", "options"))


class Decoder:
  """A module and options bound once: `Decoder(module, max_decode_length=32)(params, tokens)`.

  Repeated calls with the same shapes reuse the compiled function (jax.jit's cache keyed by
  the hashable module and options); params may be sharded arrays.
  """

  def __init__(self, module, options: DecodeOptions | None = None, **kwargs):
    self.module = module
    self.options = options if options is not None else DecodeOptions(**kwargs)

  def _args(self, params, encoder_input_tokens, rng):
    if rng is None:
      if self.options.method == "sample" and self.options.temperature > 0:
        raise ValueError("method='sample' needs rng (a jax.random key): got None")
      rng = jax.random.key(0)  # unused by greedy and beam search
    return self.module, self.options, params, encoder_input_tokens, rng

  def __call__(self, params, encoder_input_tokens, rng=None) -> DecodeResult:
    return _decode_jit(*self._args(params, encoder_input_tokens, rng))

  def lower(self, params, encoder_input_tokens, rng=None):
    """jax's Lowered (for .compile().cost_analysis() or .as_text())."""
    return _decode_jit.lower(*self._args(params, encoder_input_tokens, rng))


def make_decode_fn(module, **options) -> Decoder:
  return Decoder(module, DecodeOptions(**options))


def decode(module, params, encoder_input_tokens, *, max_decode_length: int,
           method: str = "greedy", rng=None, **options) -> DecodeResult:
  """Decodes `encoder_input_tokens` (batch, length; 0 is padding); see DecodeOptions.

  Options: temperature, top_k, top_p (sample); num_beams, length_penalty (beam; alpha, default
  0.6); eos_id, vocab_limit, constraint (MotionSpanConstraint), ignore_eos. Beam results also
  carry every beam (beam_tokens, beam_lengths, beam_scores), best first.
  """
  options = DecodeOptions(max_decode_length, method, **options)
  return Decoder(module, options)(params, encoder_input_tokens, rng)

