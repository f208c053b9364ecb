"""Jitted decoding: greedy against uncached argmax, beam search, sampling, EOS, motion spans."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgpt_jax.lm import decoding
from mgpt_jax.lm.config import get_config
from mgpt_jax.lm.decoding import DecodeOptions, LogitsProcessor, MotionSpanConstraint
from mgpt_jax.lm.t5 import Transformer

TINY = get_config("tiny", vocab_size=64, dropout_rate=0.0)
MODULE = Transformer(TINY)
MAX_LEN = 8
SPAN = MotionSpanConstraint(som_id=50, eom_id=51, code_start=10, num_codes=40)


_init = jax.jit(lambda key: MODULE.init(key, jnp.ones((1, 7), jnp.int32),
                                        jnp.ones((1, 3), jnp.int32), jnp.ones((1, 3), jnp.int32),
                                        enable_dropout=False)["params"])


def _params(seed: int, eos_scale: float = 1.0):
  params = _init(jax.random.key(seed))
  # A larger EOS column makes EOS the argmax at some steps: seed 1 with 3.0 ends rows 0 and 2.
  kernel = params["decoder"]["logits_dense"]["kernel"]
  params["decoder"]["logits_dense"]["kernel"] = kernel.at[:, 1].multiply(eos_scale)
  return params


@pytest.fixture(scope="module")
def params():
  return _params(0)


@pytest.fixture(scope="module")
def eos_params():
  return _params(1, eos_scale=3.0)


@pytest.fixture(scope="module")
def enc():
  tokens = np.random.default_rng(0).integers(2, 64, (4, 7))
  tokens[1, 4:] = 0
  tokens[3, 2:] = 0
  return jnp.asarray(tokens, jnp.int32)


_forward = jax.jit(lambda p, e, d: MODULE.apply({"params": p}, e, d, jnp.ones_like(d),
                                                enable_dropout=False))


def _teacher_forced_logp(params, enc, tokens):
  """Per-position log-probs (batch, max_len, vocab) of `tokens` fed back as decoder inputs."""
  dec_in = jnp.concatenate([jnp.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
  return jax.nn.log_softmax(_forward(params, enc, dec_in), axis=-1)


def _sequence_logp(params, enc, tokens, lengths):
  logp = _teacher_forced_logp(params, enc, tokens)
  picked = jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]
  return np.asarray(jnp.sum(jnp.where(jnp.arange(tokens.shape[1]) < lengths[:, None],
                                      picked, 0.0), axis=1))


def _uncached_greedy(params, enc, max_len, eos_id=1):
  """Greedy without a cache: the full causal forward on the prefix at every step."""
  tokens = np.zeros((enc.shape[0], max_len), np.int32)
  done = np.zeros(enc.shape[0], bool)
  for i in range(max_len):
    # Causal: the positions after i do not change position i, so one shape serves every step.
    prefix = np.concatenate([np.zeros((enc.shape[0], 1), np.int32), tokens[:, :-1]], axis=1)
    logits = np.asarray(_forward(params, enc, jnp.asarray(prefix)))[:, i]
    tokens[:, i] = np.where(done, 0, logits.argmax(-1))
    done |= tokens[:, i] == eos_id
  return tokens


def _check_lengths(tokens, lengths, eos_id=1):
  for row, length in zip(np.asarray(tokens), np.asarray(lengths)):
    eos = np.flatnonzero(row == eos_id)
    assert length == (eos[0] + 1 if eos.size else len(row))
    assert not row[length:].any()  # pads after EOS


@pytest.mark.parametrize("which", ["params", "eos_params"])
def test_cached_greedy_equals_uncached_argmax(which, request, enc):
  params = request.getfixturevalue(which)
  result = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN)
  np.testing.assert_array_equal(result.tokens, _uncached_greedy(params, enc, MAX_LEN))
  _check_lengths(result.tokens, result.lengths)
  np.testing.assert_allclose(result.scores, _sequence_logp(params, enc, result.tokens,
                                                           result.lengths), atol=1e-4)
  if which == "eos_params":
    assert list(np.asarray(result.lengths)) == [6, 8, 3, 8]  # per-sequence stop


def test_ignore_eos_runs_to_max_len(eos_params, enc):
  result = decoding.decode(MODULE, eos_params, enc, max_decode_length=MAX_LEN, ignore_eos=True)
  assert (np.asarray(result.lengths) == MAX_LEN).all()
  assert not (np.asarray(result.tokens) == 1).any()


def test_argmax_and_logsumexp_match_jax():
  x = jax.random.normal(jax.random.key(0), (5, 256))
  x = x.at[1, 7].set(9.0).at[1, 200].set(9.0)  # a tie: the first index wins, as jnp.argmax
  for logits in (x, x[:, :100]):  # chunked, and the fallback for an odd vocabulary
    token, lse = jax.jit(decoding.argmax_and_logsumexp)(logits)
    np.testing.assert_array_equal(token, jnp.argmax(logits, -1))
    np.testing.assert_allclose(lse, jax.nn.logsumexp(logits, -1), rtol=1e-6)


@pytest.mark.parametrize("which", ["params", "eos_params"])
def test_one_beam_is_greedy(which, request, enc):
  params = request.getfixturevalue(which)
  greedy = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN)
  beam = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN, method="beam",
                         num_beams=1, length_penalty=0.0)
  np.testing.assert_array_equal(beam.tokens, greedy.tokens)
  np.testing.assert_array_equal(beam.lengths, greedy.lengths)
  np.testing.assert_allclose(beam.scores, greedy.scores, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_beats_greedy_and_scores_are_exact(seed, enc):
  params = _params(seed, eos_scale=2.5)
  greedy = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN)
  for alpha in (0.0, 0.6):
    beam = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN, method="beam",
                           num_beams=4, length_penalty=alpha)
    batch, beams, length = beam.beam_tokens.shape
    assert (batch, beams, length) == (4, 4, MAX_LEN)
    # Every beam's score is its teacher-forced log-prob over the T5X length penalty.
    flat = beam.beam_tokens.reshape(-1, length)
    lengths = beam.beam_lengths.reshape(-1)
    logp = _sequence_logp(params, jnp.repeat(enc, beams, axis=0), flat, lengths)
    penalty = ((5.0 + np.asarray(lengths)) / 6.0) ** alpha
    np.testing.assert_allclose(beam.beam_scores.reshape(-1), logp / penalty, rtol=1e-4,
                               atol=1e-4)
    for tokens, lens in zip(np.asarray(beam.beam_tokens), np.asarray(beam.beam_lengths)):
      _check_lengths(tokens, lens)
    assert (np.diff(np.asarray(beam.beam_scores), axis=1) <= 0).all()  # best first
    np.testing.assert_array_equal(beam.tokens, beam.beam_tokens[:, 0])
    greedy_score = np.asarray(greedy.scores) / ((5.0 + np.asarray(greedy.lengths)) / 6.0) ** alpha
    assert (np.asarray(beam.scores) >= greedy_score - 1e-4).all()


def test_sampling_is_reproducible_and_filters(params, enc):
  sample = lambda key, **kw: decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN,
                                             method="sample", rng=jax.random.key(key), **kw)
  first, again, other = sample(0), sample(0), sample(1)
  np.testing.assert_array_equal(first.tokens, again.tokens)
  assert (np.asarray(first.tokens) != np.asarray(other.tokens)).any()
  greedy = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN).tokens
  for options in ({"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-5}):
    np.testing.assert_array_equal(sample(3, **options).tokens, greedy, err_msg=str(options))
  # Sampled tokens lie inside the top-k and the nucleus of the model's own distribution (the
  # nucleus is taken after temperature: 0.5 here keeps the nucleus of the sharpened logits).
  result = sample(4, top_k=5, top_p=0.9, temperature=0.5)
  logp = np.asarray(jax.nn.log_softmax(
      2.0 * _teacher_forced_logp(params, enc, result.tokens), axis=-1))
  picked = np.take_along_axis(logp, np.asarray(result.tokens)[..., None], -1)
  assert (logp > picked).sum(-1).max() < 5  # how many tokens beat the sampled one
  assert np.where(logp > picked, np.exp(logp), 0.0).sum(-1).max() < 0.9 + 1e-5


def test_filter_logits_top_k_top_p():
  logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15], [0.2, 0.2, 0.2, 0.2, 0.2]]))
  kept = lambda **kw: np.asarray(decoding.filter_logits(logits, **kw) > decoding.NEG_INF / 2)
  np.testing.assert_array_equal(kept(top_k=2)[0], [0, 1, 0, 1, 0])
  np.testing.assert_array_equal(kept(top_p=0.6)[0], [0, 1, 0, 1, 0])  # 0.4 + 0.3 reaches 0.6
  np.testing.assert_array_equal(kept(top_p=0.75)[0], [0, 1, 0, 1, 1])
  np.testing.assert_array_equal(kept(top_p=0.3)[0], [0, 1, 0, 0, 0])  # the first always stays
  np.testing.assert_array_equal(kept(top_k=4, top_p=0.8)[0], [0, 1, 0, 1, 1])
  assert kept(top_p=0.5)[1].all()  # ties at the threshold stay
  np.testing.assert_allclose(decoding.filter_logits(logits, temperature=2.0), logits / 2.0)


@pytest.mark.parametrize("options", [{"top_k": 40, "top_p": 0.6}, {"top_p": 0.8}])
def test_sample_token_draws_from_filter_logits(options):
  """The top-k shortcut (and, for a flat row, its sorting fallback) samples filter_logits."""
  draw = jax.jit(lambda logits: jax.vmap(lambda key: decoding.sample_token(
      logits, key, 0.7, candidates=16, **options))(jax.random.split(jax.random.key(0), 4000)))
  peaked = jax.random.normal(jax.random.key(1), (2, 300)) * 3.0
  # 16 candidates cannot hold 0.8 of a flat row: that batch takes the fallback.
  for logits in (peaked, peaked.at[1].multiply(0.01)):
    tokens = np.asarray(draw(logits))
    probs = np.asarray(jax.nn.softmax(decoding.filter_logits(logits, 0.7, **options), axis=-1))
    for row in range(2):
      assert (probs[row, tokens[:, row]] > 0).all()  # never outside the filtered support
      frequency = np.bincount(tokens[:, row], minlength=300) / len(tokens)
      assert np.abs(frequency - probs[row]).max() < 0.03, (row, options)


def test_toy_logits_fn_stops_each_row_and_the_loop_early():
  """Row b emits EOS at step stops[b]; row 3 never does; the loop ends when all are done."""
  calls = []

  def run(stops):
    def logits_fn(tokens, step, cache):
      del tokens
      jax.debug.callback(lambda s: calls.append(int(s)), step)
      return jax.nn.one_hot(jnp.where(step == stops, 1, 5 + step), 16) * 10.0, cache + 1
    return decoding.sample_loop(logits_fn, jnp.int32(0), batch_size=4, max_len=6,
                                process=LogitsProcessor(6))

  run = jax.jit(run)
  result = run(jnp.array([0, 2, 4, 99]))
  expected = np.array([[1, 0, 0, 0, 0, 0], [5, 6, 1, 0, 0, 0], [5, 6, 7, 8, 1, 0],
                       [5, 6, 7, 8, 9, 10]])
  np.testing.assert_array_equal(result.tokens, expected)
  np.testing.assert_array_equal(result.lengths, [1, 3, 5, 6])
  calls.clear()
  jax.block_until_ready(run(jnp.array([0, 2, 1, 2])))
  jax.effects_barrier()
  assert calls == [0, 1, 2]  # three steps, not six


def _check_span(tokens, lengths, span=SPAN, min_codes=1):
  for row, length in zip(np.asarray(tokens), np.asarray(lengths)):
    eom = int(np.flatnonzero(row == span.eom_id)[0])
    assert row[0] == span.som_id
    codes = row[1:eom]
    assert len(codes) >= min_codes
    assert ((codes >= span.code_start) & (codes < span.code_start + span.num_codes)).all()
    assert row[eom + 1] == 1 and length == eom + 2 and not row[eom + 2:].any()


@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_motion_span_constraint_with_the_model(method, eos_params, enc):
  for key in range(2 if method == "sample" else 1):
    result = decoding.decode(MODULE, eos_params, enc, max_decode_length=MAX_LEN, method=method,
                             rng=jax.random.key(key), num_beams=3, constraint=SPAN)
    _check_span(result.tokens, result.lengths)
    if method == "beam":
      for tokens, lengths in zip(np.asarray(result.beam_tokens),
                                 np.asarray(result.beam_lengths)):
        _check_span(tokens, lengths)


def test_motion_span_constraint_against_any_preference():
  """Even a model that always wants eom (or EOS, or pad) gives a well-formed span."""
  span = MotionSpanConstraint(som_id=50, eom_id=51, code_start=10, num_codes=40, min_codes=2)
  process = LogitsProcessor(7, constraint=span)

  def loops(favourite):
    def logits_fn(tokens, step, cache):
      return jnp.zeros((3, 64)).at[:, favourite].set(5.0).at[:, 11 + step].add(1.0), cache
    return (decoding.sample_loop(logits_fn, (), batch_size=3, max_len=7, process=process),
            decoding.sample_loop(logits_fn, (), batch_size=3, max_len=7, process=process,
                                 rng=jax.random.key(0), temperature=1.0),
            decoding.beam_search_loop(logits_fn, (), batch_size=1, num_beams=3, max_len=7,
                                      process=process))

  run = jax.jit(loops)
  for favourite in (51, 1, 0):
    for result in run(favourite):
      _check_span(result.tokens, result.lengths, span, min_codes=2)
    if favourite == 51:  # eom as soon as min_codes allow it
      assert list(np.asarray(result.tokens)[0]) == [50, 12, 13, 51, 1, 0, 0]


def test_vocab_limit_keeps_ids_below_it(params, enc):
  result = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN, vocab_limit=20)
  assert np.asarray(result.tokens).max() < 20
  unlimited = decoding.decode(MODULE, params, enc, max_decode_length=MAX_LEN)
  assert np.asarray(unlimited.tokens).max() >= 20  # the limit did change something
  # A toy model that prefers the ids past the limit, for every method.
  logits_fn = lambda tokens, step, cache: (jnp.tile(jnp.arange(64.0) / 8, (3, 1)), cache)
  process = LogitsProcessor(5, vocab_limit=20)
  for loop in (lambda: decoding.sample_loop(logits_fn, (), batch_size=3, max_len=5,
                                            process=process),
               lambda: decoding.sample_loop(logits_fn, (), batch_size=3, max_len=5,
                                            process=process, rng=jax.random.key(0),
                                            temperature=5.0),
               lambda: decoding.beam_search_loop(logits_fn, (), batch_size=1, num_beams=3,
                                                 max_len=5, process=process)):
    result = jax.jit(loop)()
    tokens = np.asarray(result.tokens if result.beam_tokens is None else result.beam_tokens)
    assert tokens.max() < 20 and tokens.max() >= 15


def test_decoder_reuses_the_compiled_function(params, enc):
  options = {"max_decode_length": MAX_LEN, "method": "beam", "num_beams": 1,
             "length_penalty": 0.0}  # as test_one_beam_is_greedy: one compile serves both
  first = decoding.make_decode_fn(MODULE, **options)(params, enc)
  size = decoding._decode_jit._cache_size()  # pylint: disable=protected-access
  again = decoding.Decoder(Transformer(TINY), **options)(params, enc)  # an equal module
  assert decoding._decode_jit._cache_size() == size  # pylint: disable=protected-access
  np.testing.assert_array_equal(first.tokens, again.tokens)


@pytest.mark.parametrize("options, message", [
    ({"method": "topk"}, "method 'topk'"),
    ({"top_p": 0.0}, "top_p 0.0"),
    ({"num_beams": 0}, "num_beams 0"),
    ({"constraint": SPAN, "max_decode_length": 3}, "needs >= 4"),
    ({"constraint": SPAN, "ignore_eos": True}, "ignore_eos with a constraint"),
    ({"constraint": SPAN, "vocab_limit": 40}, "constraint id 51 >= vocab_limit 40"),
    ({"length_penalty": -0.5}, "length_penalty -0.5: expected >= 0"),
])
def test_bad_options_are_named(options, message):
  with pytest.raises(ValueError, match=message):
    DecodeOptions(**{"max_decode_length": MAX_LEN, **options})


def test_bad_calls_are_named(params, enc):
  with pytest.raises(ValueError, match="needs rng"):
    decoding.decode(MODULE, params, enc, max_decode_length=4, method="sample")
  with pytest.raises(ValueError, match="vocab_limit 100 exceeds the model's vocab_size 64"):
    decoding.decode(MODULE, params, enc, max_decode_length=4, vocab_limit=100)
  with pytest.raises(ValueError, match="inside the motion codes"):
    MotionSpanConstraint(som_id=12, eom_id=51, code_start=10, num_codes=40)


def test_span_from_the_vocabulary_layout():
  # <motion_id_k> = 32100 + k with the real T5 vocabulary: codes 0..511, then som 512, eom 513.
  span = MotionSpanConstraint.from_offset(32100)
  assert (span.som_id, span.eom_id, span.code_start, span.num_codes) == (32612, 32613, 32100, 512)


def test_cache_expands_along_the_batch_as_t5x_does(params, enc):
  """t5x's beam search and multi-sample decoding repeat every cache entry but `cache_index`
  along axis 0 (decoding.flat_batch_beam_expand); a 0-d entry made that fail."""
  from flax import traverse_util
  k, dec = 2, jnp.ones((enc.shape[0], MAX_LEN), jnp.int32)
  _, variables = MODULE.apply({"params": params}, jnp.ones_like(enc), dec, dec, decode=True,
                              enable_dropout=False, mutable=["cache"])
  flat = traverse_util.flatten_dict(variables["cache"])
  assert {path[-1] for path in flat} >= {"cross_key", "cross_filled", "cached_key"}
  for path, x in flat.items():
    assert path[-1] == "cache_index" or (x.ndim and x.shape[0] == enc.shape[0]), path
  expand = lambda x: jnp.repeat(x, k, axis=0)
  cache = traverse_util.unflatten_dict(
      {p: x if p[-1] == "cache_index" else expand(x) for p, x in flat.items()})
  encoded = expand(MODULE.apply({"params": params}, enc, enable_dropout=False,
                                method=MODULE.encode))
  step = jax.jit(lambda c, t: MODULE.apply(
      {"params": params, "cache": c}, encoded, expand(enc), t, t, enable_dropout=False,
      decode=True, max_decode_length=MAX_LEN, mutable=["cache"], method=MODULE.decode))
  tokens = np.zeros((k * enc.shape[0], MAX_LEN), np.int32)
  prev, done = np.zeros((k * enc.shape[0], 1), np.int32), np.zeros(k * enc.shape[0], bool)
  for i in range(MAX_LEN):
    logits, mutated = step(cache, jnp.asarray(prev))
    cache = mutated["cache"]
    tokens[:, i] = np.where(done, 0, np.asarray(logits[:, 0]).argmax(-1))
    done |= tokens[:, i] == 1
    prev = tokens[:, i:i + 1]
  greedy = _uncached_greedy(params, enc, MAX_LEN)
  np.testing.assert_array_equal(tokens[0::k], greedy)
  np.testing.assert_array_equal(tokens[1::k], greedy)


def test_forced_tokens_start_the_answer_and_the_model_goes_on():
  """sample_loop's decoder prompt: forced ids where set (-1 free), scored by the model."""
  def logits_fn(tokens, step, cache):
    return jnp.zeros((2, 16)).at[:, 5].set(3.0).at[:, 1].set(jnp.where(step >= 4, 9.0, 0.0)), cache

  forced = jnp.full((2, 6), -1, jnp.int32).at[0, :2].set(jnp.array([7, 8]))
  process = LogitsProcessor(6)
  result = jax.jit(lambda f: decoding.sample_loop(logits_fn, (), batch_size=2, max_len=6,
                                                  process=process, forced=f))(forced)
  tokens = np.asarray(result.tokens)
  assert list(tokens[0]) == [7, 8, 5, 5, 1, 0] and list(tokens[1]) == [5, 5, 5, 5, 1, 0]
  free = jax.nn.log_softmax(jnp.zeros(16).at[5].set(3.0))
  np.testing.assert_allclose(result.scores[0] - result.scores[1], 2 * (free[7] - free[5]),
                             rtol=1e-5)
