"""The VQ-VAE network and its EMA quantiser."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgpt_jax.tokenizer.losses import ReconstructionLoss, smooth_l1
from mgpt_jax.tokenizer.quantizer import STATS, QuantizeEMAReset
from mgpt_jax.tokenizer.vqvae import MotionVQVAE, VQConfig


def _count(config, frames=64):
  module = MotionVQVAE(config)
  variables = jax.eval_shape(lambda: module.init(
      {"params": jax.random.key(0), "vq": jax.random.key(1)},
      jnp.zeros((1, frames, config.nfeats))))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"])), variables


def test_full_size_parameter_count():
  count, variables = _count(VQConfig())
  assert count == 19_436_807
  assert variables[STATS]["quantizer"]["codebook"].shape == (512, 512)  # state, not a parameter
  assert _count(VQConfig(nfeats=251))[0] == 19_399_931


def test_every_parameter_has_logical_axes():
  _, variables = _count(VQConfig(width=16, code_dim=8, num_codes=16))
  names = nn.partitioning.get_axis_names(variables["params_axes"])
  params = jax.tree.leaves(variables["params"])
  specs = jax.tree.leaves(names, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  assert len(specs) == len(params)
  for spec, param in zip(specs, params):
    assert len(spec) == param.ndim


def test_shapes_encode_decode_and_bad_input():
  config = VQConfig(width=16, code_dim=8, num_codes=16, nfeats=263)
  module = MotionVQVAE(config)
  motion = jax.random.normal(jax.random.key(0), (2, 40, 263))
  variables = module.init({"params": jax.random.key(0), "vq": jax.random.key(1)}, motion)
  out = module.apply(variables, motion)
  assert out["reconstruction"].shape == motion.shape and out["indices"].shape == (2, 10)
  codes = module.apply(variables, motion, method=MotionVQVAE.encode)
  assert codes.shape == (2, 10) and codes.dtype == jnp.int32
  assert module.apply(variables, codes, method=MotionVQVAE.decode).shape == (2, 40, 263)
  with pytest.raises(ValueError, match="not a multiple of 4"):
    module.apply(variables, motion[:, :38])
  with pytest.raises(ValueError, match="expects 263"):
    module.apply(variables, motion[..., :251])


def _quantize(module, state, x, seed=0):
  return module.apply({STATS: state}, x, train=True, rngs={"vq": jax.random.key(seed)},
                      mutable=[STATS])


def test_first_batch_initialises_codebook_and_straight_through():
  module = QuantizeEMAReset(num_codes=8, code_dim=4)
  x = jax.random.normal(jax.random.key(0), (2, 8, 4))
  state = module.init({"vq": jax.random.key(1)}, x)[STATS]
  assert not state["initialized"]
  (quantized, commit, perplexity, indices), new = _quantize(module, state, x)
  flat = x.reshape(-1, 4)
  # Fresh codebook = the first 8 rows, so those rows quantise to themselves.
  np.testing.assert_array_equal(indices.reshape(-1)[:8], np.arange(8))
  np.testing.assert_allclose(quantized.reshape(-1, 4)[:8], flat[:8], atol=1e-6)
  assert bool(new[STATS]["initialized"]) and float(perplexity) > 1
  # Gradients pass straight through the quantiser.
  grad = jax.grad(lambda v: _quantize(module, state, v)[0][0].sum())(x)
  np.testing.assert_allclose(grad, jnp.ones_like(x))


def test_small_batch_is_tiled_with_noise():
  module = QuantizeEMAReset(num_codes=16, code_dim=4)
  x = jax.random.normal(jax.random.key(0), (1, 5, 4))
  state = module.init({"vq": jax.random.key(1)}, x)[STATS]
  _, new = _quantize(module, state, x)
  codebook = np.asarray(new[STATS]["codebook"])
  assert np.isfinite(codebook).all() and len(np.unique(codebook.round(6), axis=0)) == 16


def test_dead_code_is_reset_to_a_batch_row():
  module = QuantizeEMAReset(num_codes=4, code_dim=2, decay=0.99)
  x = jnp.array([[[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [0.0, 0.1], [5.0, 5.1]]])
  codebook = jnp.array([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0], [-100.0, -100.0]])
  state = {"codebook": codebook, "code_sum": codebook, "code_count": jnp.ones(4),
           "initialized": jnp.array(True)}
  (_, _, _, indices), new = _quantize(module, state, x)
  assert set(np.asarray(indices).ravel()) == {0, 1}
  count = np.asarray(new[STATS]["code_count"])
  np.testing.assert_allclose(count, [0.99 + 0.03, 0.99 + 0.03, 0.99, 0.99])
  # Codes 2 and 3 got nothing: their count fell below 1, so they take batch rows 2 and 3.
  book = np.asarray(new[STATS]["codebook"])
  np.testing.assert_allclose(book[2:], np.asarray(x[0, 2:4]))
  np.testing.assert_allclose(book[0], np.asarray(new[STATS]["code_sum"][0] / count[0]))


def test_loss_weights_and_kit_layout():
  loss = ReconstructionLoss(1.0, 0.5, 0.02)
  target = jnp.zeros((1, 4, 251))
  recon = target.at[..., 4:64].set(0.5)  # KIT RIC dims are 4:64
  value, terms = loss(recon, target, jnp.array(1.0))
  ric = smooth_l1(recon[..., 4:64], target[..., 4:64])
  np.testing.assert_allclose(terms["loss_ric"], ric)
  np.testing.assert_allclose(value, terms["loss_feature"] + 0.5 * ric + 0.02, rtol=1e-6)


def test_loss_kinds_and_root_term():
  target = jnp.zeros((1, 2, 263))
  recon = target.at[..., 1].set(3.0)  # one root dim (sideways velocity) off by 3
  n = 2 * 263
  expected = {"l1_smooth": 2 * 2.5 / n, "l2": 2 * 9.0 / n, "l1": 2 * 3.0 / n}
  for kind, feature in expected.items():
    value, terms = ReconstructionLoss(1.0, 0.5, 0.0, kind=kind, lambda_root=2.0)(
        recon, target, jnp.array(0.0))
    root = feature * n / 8  # the same error over the 2 x 4 root values
    np.testing.assert_allclose(terms["loss_feature"], feature, rtol=1e-6)
    np.testing.assert_allclose(terms["loss_root"], root, rtol=1e-6)
    np.testing.assert_allclose(value, feature + 2.0 * root, rtol=1e-6)  # RIC dims untouched
  with pytest.raises(ValueError, match="kind='l3'"):
    ReconstructionLoss(kind="l3")


def test_path_and_delta_terms():
  """A velocity bias of 1 held over 4 frames: the path ends 1 off (errors 1/4, 2/4, 3/4, 1 on
  one of its 3 dims); a frame-to-frame change missing from one frame: two differences off."""
  target = jnp.zeros((1, 4, 263))
  biased = target.at[..., 2].set(1.0)
  _, terms = ReconstructionLoss(kind="l2", lambda_path=1.0, lambda_delta=1.0)(
      biased, target, jnp.array(0.0))
  np.testing.assert_allclose(terms["loss_path"], (1 + 4 + 9 + 16) / 16 / 12, rtol=1e-6)
  np.testing.assert_allclose(terms["loss_delta"], 0.0, atol=1e-9)  # a constant has no change
  spike = target.at[:, 1, 10].set(2.0)
  value, terms = ReconstructionLoss(1.0, 0.0, 0.0, kind="l2", lambda_path=2.0, lambda_delta=3.0)(
      spike, target, jnp.array(0.0))
  np.testing.assert_allclose(terms["loss_delta"], 2 * 4.0 / (3 * 263), rtol=1e-6)
  np.testing.assert_allclose(terms["loss_path"], 0.0, atol=1e-9)  # dim 10 is not the root's
  np.testing.assert_allclose(value, 4.0 / (4 * 263) + 3.0 * terms["loss_delta"], rtol=1e-6)
  _, unweighed = ReconstructionLoss(kind="l2")(spike, target, jnp.array(0.0))
  assert "loss_path" not in unweighed and "loss_delta" not in unweighed
