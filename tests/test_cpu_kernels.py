"""The CPU kernels (inference/cpu_kernels.py: int8, panel, attention and greedy choice), the
int8 and panel layouts and the layers that use them (inference/kernel_layers.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgpt_jax.inference import bundle, cpu_kernels, kernel_layers, quantize
from mgpt_jax.lm import layers
from mgpt_jax.lm.config import get_config
from mgpt_jax.lm.t5 import Transformer

needs_kernel = pytest.mark.skipif(not cpu_kernels.available(),
                                  reason="no C++ compiler to build the CPU kernels")


def _reference(x, w, scale):
  return x.astype(np.float64) @ (w.astype(np.float64) * scale[:, None]).T


@needs_kernel
@pytest.mark.parametrize("m,k,n", [(1, 5, 3), (1, 64, 200), (3, 17, 70), (5, 33, 128),
                                   (13, 96, 40), (32, 64, 33)])
def test_kernel_matches_the_dequantized_product(m, k, n):
  # Every row-block size (8, 4, then 3/2/1) and the tails past 32 columns and 32 inputs.
  rng = np.random.default_rng(m * k * n)
  x = rng.standard_normal((m, k)).astype(np.float32)
  w = rng.integers(-127, 128, (n, k)).astype(np.int8)
  scale = rng.random(n).astype(np.float32)
  y = np.asarray(jax.jit(cpu_kernels.int8_matmul)(x, w, scale))
  assert y.shape == (m, n) and y.dtype == np.float32
  np.testing.assert_allclose(y, _reference(x, w, scale), rtol=1e-5, atol=1e-3)


@needs_kernel
def test_kernel_under_a_symbolic_batch_export():
  (b,) = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct
  exported = jax.export.export(
      jax.jit(cpu_kernels.int8_matmul), platforms=["cpu"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(cpu_kernels.INT8)])(
          spec((b, 3, 16), jnp.float32), spec((5, 16), jnp.int8), spec((5,), jnp.float32))
  restored = jax.export.deserialize(exported.serialize())
  rng = np.random.default_rng(0)
  w, scale = rng.integers(-9, 9, (5, 16)).astype(np.int8), np.full(5, 0.5, np.float32)
  for batch in (1, 4):
    x = rng.standard_normal((batch, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(restored.call(x, w, scale)),
                               _reference(x.reshape(-1, 16), w, scale).reshape(batch, 3, 5),
                               rtol=1e-5, atol=1e-4)


def test_a_missing_compiler_is_one_clear_error(monkeypatch, tmp_path):
  monkeypatch.setattr(cpu_kernels, "_registered", False)
  monkeypatch.setenv("CXX", "no-such-compiler-xyz")
  monkeypatch.setenv("MGPT_JAX_CACHE", str(tmp_path))
  with pytest.raises(cpu_kernels.KernelUnavailable, match="no-such-compiler-xyz"):
    cpu_kernels.register()
  assert not cpu_kernels.available()


def _params(config):
  tokens = jnp.ones((2, 6), jnp.int32)
  return Transformer(config).init(jax.random.key(0), tokens, tokens, tokens,
                                  enable_dropout=False)["params"]


def test_quantized_layout_is_outputs_first_and_round_trips():
  config = get_config("tiny", vocab_size=96, dropout_rate=0.0)
  params = jax.device_get(_params(config))
  tree = quantize.quantize_tree(params)
  attention = params["decoder"]["layers_0"]["self_attention"]
  query, out = attention["query"]["kernel"], attention["out"]["kernel"]  # (d, h, kv), (h, kv, d)
  q_node = tree["decoder"]["layers_0"]["self_attention"]["query"]["kernel"]
  o_node = tree["decoder"]["layers_0"]["self_attention"]["out"]["kernel"]
  assert q_node["int8"].shape == query.shape[1:] + query.shape[:1]
  assert q_node["scale"].shape == query.shape[1:]
  assert o_node["int8"].shape == out.shape[2:] + out.shape[:2]
  assert tree["token_embedder"]["embedding"]["int8"].shape == (96, config.emb_dim)
  assert isinstance(tree["decoder"]["relpos_bias"]["rel_embedding"], np.ndarray)  # kept float
  back = quantize.dequantize_tree(tree)
  for (path, w), restored in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                 jax.tree.leaves(back)):
    names = tuple(k.key for k in path)
    assert restored.shape == w.shape, names
    if w.ndim < 2 or "relpos_bias" in names:
      np.testing.assert_array_equal(restored, w)  # kept float
      continue
    # Round to nearest: within half of each output channel's own step (max |w| / 127 over the
    # inputs it contracts), so a channel mixed up with another would not pass.
    contracted = quantize.contracted_axes(names, w.ndim)
    step = np.abs(w).max(axis=contracted, keepdims=True) / 127.0
    assert (np.abs(np.asarray(restored) - w) <= 0.5 * step + 1e-7).all(), names


@needs_kernel
@pytest.mark.parametrize("tied", [False, True])
def test_int8_layers_compute_what_the_dequantized_model_computes(tied):
  config = get_config("tiny", vocab_size=96, dropout_rate=0.0, logits_via_embedding=tied)
  module = Transformer(config)
  tree = quantize.quantize_tree(jax.device_get(_params(config)))
  rng = np.random.default_rng(1)
  enc, dec = (jnp.asarray(rng.integers(2, 96, (3, n)), jnp.int32) for n in (7, 5))
  apply = lambda params: module.apply({"params": params}, enc, dec, dec, enable_dropout=False)
  expected = apply(quantize.dequantize_tree(tree))
  with kernel_layers.kernel_layers():
    lowered = jax.jit(apply).lower(tree)
    got = jax.jit(apply)(tree)
  # Every projection and the logits went through the kernel: 2 + 2 layers' attention (4 each),
  # 2 cross (4), the gated MLPs (3 each), and the logits (dense or the tied table's attend).
  calls = lowered.as_text().count(cpu_kernels.INT8)
  assert calls == 2 * (4 + 3) + 2 * (4 + 4 + 3) + 1, calls
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
  # Outside the context the interceptor is gone: the quantized tree is not a float model.
  with pytest.raises(Exception):
    apply(tree)


@needs_kernel
@pytest.mark.parametrize("m,k,n", [(1, 5, 3), (1, 64, 200), (7, 17, 70), (13, 96, 64),
                                   (32, 64, 130), (6, 33, 1), (11, 40, 257), (10, 24, 50),
                                   (20, 16, 96)])
def test_panel_kernel_matches_the_float_product(m, k, n):
  # Every tile of rows (8, then each of 7..1) and panels cut short past n.
  rng = np.random.default_rng(m * k * n)
  x = rng.standard_normal((m, k)).astype(np.float32)
  w = rng.standard_normal((k, n)).astype(np.float32)
  panels = cpu_kernels.to_panels(w)
  assert panels.shape == (-(-n // cpu_kernels.PANEL), k, cpu_kernels.PANEL)
  y = np.asarray(jax.jit(cpu_kernels.panel_matmul, static_argnums=2)(x, panels, n))
  assert y.shape == (m, n) and y.dtype == np.float32
  np.testing.assert_allclose(y, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-4)


@needs_kernel
def test_panel_kernel_under_a_symbolic_batch_export():
  (b,) = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct
  exported = jax.export.export(
      jax.jit(lambda x, p: cpu_kernels.panel_matmul(x, p, 70)), platforms=["cpu"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(cpu_kernels.PANELS)])(
          spec((b, 3, 16), jnp.float32), spec((2, 16, cpu_kernels.PANEL), jnp.float32))
  restored = jax.export.deserialize(exported.serialize())
  rng = np.random.default_rng(0)
  w = rng.standard_normal((16, 70)).astype(np.float32)
  for batch in (1, 4):
    x = rng.standard_normal((batch, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(restored.call(x, cpu_kernels.to_panels(w))),
                               x @ w, rtol=1e-5, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("tied", [False, True])
def test_panel_layers_compute_what_the_float_model_computes(tied):
  config = get_config("tiny", vocab_size=96, dropout_rate=0.0, logits_via_embedding=tied)
  module = Transformer(config)
  params = jax.device_get(_params(config))
  tree = kernel_layers.panel_tree(params, min_weights=0)
  cross = tree["decoder"]["layers_0"]["encoder_decoder_attention"]
  assert kernel_layers.is_panels(cross["query"]["kernel"])
  assert isinstance(cross["key"]["kernel"], np.ndarray)  # projected once per answer, as it is
  assert isinstance(tree["token_embedder"]["embedding"], np.ndarray)
  largest = max(map(np.size, jax.tree.leaves(params)))
  big = kernel_layers.panel_tree(params, min_weights=largest + 1)
  assert not any(kernel_layers.is_panels(n) for n in jax.tree.leaves(
      big, is_leaf=kernel_layers.is_panels))  # every tiny matrix stays XLA's
  rng = np.random.default_rng(1)
  enc, dec = (jnp.asarray(rng.integers(2, 96, (3, n)), jnp.int32) for n in (7, 5))
  apply = lambda p: module.apply({"params": p}, enc, dec, dec, enable_dropout=False)
  with kernel_layers.kernel_layers():
    calls = jax.jit(apply).lower(tree).as_text().count(cpu_kernels.PANELS)
    got = jax.jit(apply)(tree)
  # Encoder: 2 x (4 attention + 3 MLP); decoder: 2 x (4 self + query and out of cross + 3 MLP);
  # the logits' dense layer (the tied table's attend stays XLA's).
  assert calls == 2 * 7 + 2 * 9 + (0 if tied else 1), calls
  np.testing.assert_allclose(np.asarray(got), np.asarray(apply(params)), rtol=1e-4, atol=1e-4)
  # The bundle's whole greedy answer: the same tokens through the kernels.
  fns = [jax.jit(bundle.generation_functions(module, 12, 96, kernels=k)["greedy"])
         for k in (False, True)]
  forced = np.full((3, 12), -1, np.int32)
  plain, kernels = (np.asarray(f(p, enc, 12, 0, forced)[0]) for f, p in zip(fns, (params, tree)))
  np.testing.assert_array_equal(kernels, plain)
  # The encoder's attention, and a step's self and cross attention in each decoder layer, go
  # through the attention kernel.
  compiled = fns[1].lower(tree, enc, 12, 0, forced).compile().as_text()
  assert compiled.count(cpu_kernels.ATTENTION) == (config.num_encoder_layers
                                                   + 2 * config.num_decoder_layers)


def _attention_case(b, h, length, d, seed, cross, queries=1):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((b, queries, h, d)).astype(np.float32)
  k, v = (rng.standard_normal((b, length, h, d)).astype(np.float32) * 2 for _ in range(2))
  if cross:  # the prompt's padding: a mask per row, no bias
    mask, bias = rng.random((b, 1, 1, length)) < 0.7, None
    mask[..., -2:] = False
    mask[0] = False  # a row with every key masked: uniform weights, as XLA's softmax gives
  else:  # decode steps (or, with queries, causal positions) with a bias per head
    last = seed % length + np.arange(queries)[:, None] - queries + 1
    mask = (np.arange(length) <= np.maximum(last, 0))[None, None]
    bias = rng.standard_normal((1, h, queries, length)).astype(np.float32)
  return q, k, v, mask, bias


@needs_kernel
@pytest.mark.parametrize("b,h,length,d,cross,queries", [
    (1, 4, 40, 32, False, 1), (3, 2, 19, 20, True, 1), (32, 8, 64, 64, False, 1),
    (5, 3, 33, 64, True, 1), (2, 1, 1, 16, False, 1), (3, 2, 24, 32, True, 24),
    (2, 4, 17, 16, False, 9), (3, 2, 21, 32, False, 1), (2, 3, 19, 16, False, 1),
    (2, 2, 70, 128, False, 1)])
def test_attention_kernel_matches_the_layer(b, h, length, d, cross, queries):
  # layers.MultiHeadAttention.attend through the kernel: decode steps (the masked tail of the
  # self-attention cache is skipped; 32 x 8 rows run on the pool; d need not be a multiple of
  # 16), an encoder's padded prompts and causal positions. Head sizes of 16, 32, 64 and 128
  # score sixteen keys at a time: 12 of 21 keys (a block reads past the last unmasked key),
  # 17 of 19 (the last key alone: the cache ends before the block would).
  q, k, v, mask, bias = _attention_case(b, h, length, d, b * length + d, cross, queries)
  weights = layers.attention_weights(q.astype(np.float64), k.astype(np.float64), mask, bias)
  want = np.einsum("bhqk,bkhd->bqhd", weights, v.astype(np.float64))
  got = np.asarray(jax.jit(kernel_layers.attention)(q, k, v, mask, bias))
  assert got.shape == (b, queries, h, d) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_attention_kernel_under_a_symbolic_batch_export():
  (b,) = jax.export.symbolic_shape("b")
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  exported = jax.export.export(
      jax.jit(cpu_kernels.attention), platforms=["cpu"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(cpu_kernels.ATTENTION)])(
          spec(b, 2, 1, 16), spec(b, 2, 9, 16), spec(b, 2, 9, 16), spec(1, 2, 1, 9))
  restored = jax.export.deserialize(exported.serialize())
  heads_major = lambda x: x.transpose(0, 2, 1, 3)
  for batch in (1, 3):
    q, k, v, mask, bias = _attention_case(batch, 2, 9, 16, batch, False)
    scores_bias = np.where(mask, bias, layers.NEG_INF)
    got = restored.call(heads_major(q), heads_major(k), heads_major(v), scores_bias)
    want = jax.jit(kernel_layers.attention)(q, k, v, mask, bias)
    np.testing.assert_allclose(np.asarray(heads_major(got)), np.asarray(want), rtol=1e-6,
                               atol=1e-6)


def _logits_case(n, v, seed):
  rng = np.random.default_rng(seed)
  logits = (rng.standard_normal((n, v)) * 3).astype(np.float32)
  logits[:, v - v // 8:] = layers.NEG_INF  # past a vocab_limit
  for r in range(n):  # ties: the first of them is the argmax, whichever lane holds it
    ties = rng.choice(v - v // 8, size=min(3, v - v // 8), replace=False)
    logits[r, ties] = logits[r].max() + (r % 2)
  if n > 2:
    logits[1] = layers.NEG_INF  # a row with nothing allowed
    logits[2, -1] = logits[2].max() + 1  # the max alone in the last, partial block
  return logits


@needs_kernel
@pytest.mark.parametrize("n,v", [(1, 1), (1, 15), (3, 17), (5, 48), (32, 1152), (33, 2049)])
def test_greedy_choice_kernel_matches_argmax_and_logsumexp(n, v):
  # 33 x 2049 is shared among the pool's threads in tasks of 7 rows.
  logits = _logits_case(n, v, n * v)
  token, lse = jax.jit(cpu_kernels.greedy_choice)(logits)
  assert token.dtype == jnp.int32 and lse.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(token), np.argmax(logits, axis=-1))
  wide = logits.astype(np.float64)
  top = wide.max(-1)
  want = top + np.log(np.exp(wide - top[:, None]).sum(-1))
  np.testing.assert_allclose(np.asarray(lse), want, rtol=1e-6, atol=1e-5)


@needs_kernel
def test_greedy_choice_kernel_under_a_symbolic_batch_export():
  (b,) = jax.export.symbolic_shape("b")
  exported = jax.export.export(
      jax.jit(cpu_kernels.greedy_choice), platforms=["cpu"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(cpu_kernels.GREEDY_CHOICE)])(
          jax.ShapeDtypeStruct((b, 40), jnp.float32))
  restored = jax.export.deserialize(exported.serialize())
  for batch in (1, 4):
    logits = _logits_case(batch, 40, batch)
    token, _ = restored.call(logits)
    np.testing.assert_array_equal(np.asarray(token), np.argmax(logits, axis=-1))
