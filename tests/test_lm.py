"""The Flax T5: t5x interface, partitioning metadata, KV cache, and Hugging Face parity."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mgpt_jax
from mgpt_jax import cli
from mgpt_jax.lm.config import SIZES, get_config
from mgpt_jax.lm.t5 import Transformer

TINY = get_config("tiny", vocab_size=64, dropout_rate=0.0)


def _init(config=TINY, enc_len=6, dec_len=5, **kwargs):
  module = Transformer(config)
  variables = module.init(jax.random.key(0), jnp.ones((2, enc_len), jnp.int32),
                          jnp.ones((2, dec_len), jnp.int32), jnp.ones((2, dec_len), jnp.int32),
                          enable_dropout=False, **kwargs)
  return module, variables


def test_params_axes_cover_every_parameter():
  _, variables = _init()
  names = nn.partitioning.get_axis_names(variables["params_axes"])
  flat_params = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  flat_axes = dict(jax.tree_util.tree_flatten_with_path(
      names, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))[0])
  allowed = {"embed", "mlp", "heads", "kv", "vocab", "relpos_buckets"}
  assert len(flat_axes) == len(flat_params)
  for path, param in flat_params:
    axes = flat_axes[path]
    assert len(axes) == param.ndim and set(axes) <= allowed, (path, axes)


def test_flan_sizes_match_the_checkpoints():
  # Flan-T5-base with its 32128 rows has 247,577,856 parameters.
  config = SIZES["base"].replace(vocab_size=32128)
  shapes = jax.eval_shape(lambda: Transformer(config).init(
      jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32),
      jnp.ones((1, 4), jnp.int32), enable_dropout=False))
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == 247_577_856


def test_t5x_call_signature_and_packing():
  module, variables = _init(enc_len=8, dec_len=6)
  rng = np.random.default_rng(0)
  a_enc, b_enc = rng.integers(2, 64, 3), rng.integers(2, 64, 4)
  a_dec, b_dec = rng.integers(2, 64, 2), rng.integers(2, 64, 3)

  def single(enc, dec):
    enc_in = np.zeros((1, 8), int); enc_in[0, :len(enc)] = enc
    target = np.zeros((1, 6), int); target[0, :len(dec)] = dec
    dec_in = np.concatenate([[[0]], target[:, :-1]], axis=1)
    # Positional arguments exactly as t5x's EncoderDecoderModel passes them.
    return np.asarray(module.apply(variables, enc_in, dec_in, target, None, None, None, None,
                                   enable_dropout=False, decode=False))[0, :len(dec)]

  enc = np.zeros((1, 8), int); enc[0, :7] = np.concatenate([a_enc, b_enc])
  enc_seg = np.zeros((1, 8), int); enc_seg[0, :7] = [1] * 3 + [2] * 4
  target = np.zeros((1, 6), int); target[0, :5] = np.concatenate([a_dec, b_dec])
  dec_seg = np.zeros((1, 6), int); dec_seg[0, :5] = [1] * 2 + [2] * 3
  dec_in = np.zeros((1, 6), int); dec_in[0, 1:2] = a_dec[:1]; dec_in[0, 3:5] = b_dec[:2]
  positions = np.zeros((1, 6), int); positions[0, :5] = [0, 1, 0, 1, 2]
  packed = np.asarray(module.apply(
      variables, enc, dec_in, target, encoder_segment_ids=enc_seg, decoder_segment_ids=dec_seg,
      encoder_positions=None, decoder_positions=positions, enable_dropout=False))[0]
  np.testing.assert_allclose(packed[:2], single(a_enc, a_dec), atol=1e-5)
  np.testing.assert_allclose(packed[2:5], single(b_enc, b_dec), atol=1e-5)


def test_cached_decoding_equals_full_forward():
  module, variables = _init()
  length = 7
  enc = jnp.array([[5, 6, 7, 1, 0, 0], [9, 3, 1, 0, 0, 0]])
  tokens = jnp.array([[0, 8, 9, 10, 11, 12, 13], [0, 4, 4, 2, 7, 30, 1]])
  full = module.apply(variables, enc, tokens, jnp.ones_like(tokens), enable_dropout=False)
  cache = module.init(jax.random.key(0), enc, tokens, tokens, decode=True,
                      enable_dropout=False)["cache"]
  encoded = module.apply(variables, enc, enable_dropout=False, method=module.encode)
  step = jax.jit(lambda c, t: module.apply(
      {**variables, "cache": c}, encoded, enc, t, t, enable_dropout=False, decode=True,
      max_decode_length=length, mutable=["cache"], method=module.decode))
  for t in range(length):
    logits, mutated = step(cache, tokens[:, t:t + 1])
    cache = mutated["cache"]
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
  """A randomly initialised transformers T5 with small odd dims, saved on torch CPU."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  config = transformers.T5Config(
      vocab_size=203, d_model=36, d_kv=10, d_ff=52, num_layers=3, num_decoder_layers=2,
      num_heads=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
      decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  with torch.no_grad():  # an untied head, as in Flan-T5
    model.lm_head.weight.copy_(torch.randn_like(model.lm_head.weight) * 0.5)
  path = str(tmp_path_factory.mktemp("hf") / "t5")
  model.save_pretrained(path)
  return model, path


def _inputs():
  rng = np.random.default_rng(1)
  enc = rng.integers(2, 203, (2, 150)); enc[1, 100:] = 0
  target = rng.integers(2, 203, (2, 140)); target[1, 90:] = 0
  dec_in = np.concatenate([np.zeros((2, 1), int), target[:, :-1]], axis=1)
  return enc, dec_in, target


def _hf_outputs(model, enc, dec_in):
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    mask = torch.tensor(enc > 0)
    out = model(input_ids=torch.tensor(enc), attention_mask=mask,
                decoder_input_ids=torch.tensor(dec_in))
    encoded = model.get_encoder()(input_ids=torch.tensor(enc), attention_mask=mask)
  return encoded.last_hidden_state.numpy(), out.logits.numpy()


def test_import_hf_parity(hf_model, tmp_path):
  model, hf_dir = hf_model
  out = str(tmp_path / "lm")
  assert cli.main(["import-hf", hf_dir, out]) == 0
  module, params = mgpt_jax.load_lm(out)
  assert module.config.vocab_size == 768  # 203 + 515 rounded up to 128
  enc, dec_in, target = _inputs()
  hf_encoded, hf_logits = _hf_outputs(model, enc, dec_in)
  encoded = module.apply({"params": params}, enc, enable_dropout=False, method=module.encode)
  logits = module.apply({"params": params}, enc, dec_in, target, enable_dropout=False)
  assert np.abs(np.asarray(encoded) - hf_encoded)[enc > 0].max() < 1e-4
  assert np.abs(np.asarray(logits)[..., :203] - hf_logits)[target > 0].max() < 1e-4
  # The motion rows are new: drawn near the existing rows, not copies of them.
  table = np.asarray(params["token_embedder"]["embedding"])
  assert table.shape == (768, 36) and np.isfinite(table).all()
  assert abs(table[203:].std() / table[:203].std() - 1) < 0.3


def test_export_hf_loads_in_transformers(hf_model, tmp_path):
  transformers = pytest.importorskip("transformers")
  _, hf_dir = hf_model
  ours, exported = str(tmp_path / "lm"), str(tmp_path / "exported")
  assert cli.main(["import-hf", hf_dir, ours]) == 0
  assert cli.main(["export-hf", ours, exported]) == 0
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(exported).eval()
  module, params = mgpt_jax.load_lm(ours)
  enc, dec_in, target = _inputs()
  _, hf_logits = _hf_outputs(reloaded, enc, dec_in)
  logits = np.asarray(module.apply({"params": params}, enc, dec_in, target, enable_dropout=False))
  assert hf_logits.shape == logits.shape
  assert np.abs(logits - hf_logits)[target > 0].max() < 1e-4


def test_pytorch_bin_is_read_without_pickles(hf_model, tmp_path):
  torch = pytest.importorskip("torch")
  model, hf_dir = hf_model
  legacy = tmp_path / "legacy"
  legacy.mkdir()
  torch.save(model.state_dict(), legacy / "pytorch_model.bin")
  (legacy / "config.json").write_text(open(os.path.join(hf_dir, "config.json")).read())
  assert cli.main(["import-hf", str(legacy), str(tmp_path / "from_bin")]) == 0
  assert cli.main(["import-hf", hf_dir, str(tmp_path / "from_safetensors")]) == 0
  _, from_bin = mgpt_jax.load_lm(str(tmp_path / "from_bin"))
  _, from_safetensors = mgpt_jax.load_lm(str(tmp_path / "from_safetensors"))
  for a, b in zip(jax.tree.leaves(from_bin), jax.tree.leaves(from_safetensors)):
    np.testing.assert_array_equal(a, b)


def test_import_errors_are_clear(tmp_path, capsys):
  assert cli.main(["import-hf", str(tmp_path), str(tmp_path / "out")]) == 2
  assert "config.json: not found" in capsys.readouterr().err
