"""The T5 training model on the shared runner: a copy task learns, and the loss follows T5X."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mgpt_jax
from mgpt_jax.lm.config import get_config
from mgpt_jax.models.t5_model import EncoderDecoderModel, cross_entropy_with_z_loss
from mgpt_jax.training import optimizers, runner
from mgpt_jax.training.partitioning import Partitioner
from mgpt_jax.training.trainer import Trainer


class CopyTask:
  """Targets repeat the inputs (chance accuracy 1/30)."""

  def batch(self, step, process_index=0, process_count=1):
    rng = np.random.default_rng([7, step])
    tokens = rng.integers(2, 32, (16, 8))
    tokens[:, -1] = 1
    decoder_input = np.concatenate([np.zeros((16, 1), int), tokens[:, :-1]], axis=1)
    rows = slice(process_index * 16 // process_count, (process_index + 1) * 16 // process_count)
    return {"encoder_input_tokens": tokens[rows], "decoder_input_tokens": decoder_input[rows],
            "decoder_target_tokens": tokens[rows],
            "decoder_loss_weights": np.ones_like(tokens[rows], np.float32)}


def test_copy_task_learns_and_run_dir_loads(tmp_path):
  config = get_config("tiny", vocab_size=128, dropout_rate=0.0)
  model = EncoderDecoderModel(config, z_loss=1e-4)
  state, summary = runner.train(model=model, train_data=CopyTask(),
                                optimizer=optimizers.adamw(1e-2), model_dir=str(tmp_path),
                                num_steps=300, checkpoint_every=300, log_every=50,
                                progress=False)
  losses = [m["loss"] for m in summary["train"].values()]
  assert losses[-1] < 0.7 * losses[0]
  assert summary["train"][300]["accuracy"] > 0.3  # chance is 1/30
  module, params = mgpt_jax.load_lm(str(tmp_path))  # a run directory loads like a saved LM
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)
  assert module.config == config


def test_cross_entropy_and_z_loss_values():
  logits = jnp.array([[[2.0, 0.0, -1.0]]])
  targets = jnp.array([[0]])
  log_z = np.log(np.exp(2.0) + 1 + np.exp(-1.0))
  loss, z = cross_entropy_with_z_loss(logits, targets, z_loss=0.1)
  np.testing.assert_allclose(z, 0.1 * log_z**2, rtol=1e-6)
  np.testing.assert_allclose(loss, log_z - 2.0 + 0.1 * log_z**2, rtol=1e-6)


def test_initial_params_must_fit_the_model():
  spec = {k: jax.ShapeDtypeStruct((8, 8), np.int32) for k in
          ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  config = get_config("tiny", vocab_size=128)
  trainer = Trainer(EncoderDecoderModel(config), optimizers.adamw(1e-3), Partitioner((1, 1)), spec)
  params = jax.device_get(trainer.init_state().params)
  moved = jax.tree.map(lambda x: x + 1.0, params)
  state = trainer.init_state(moved)  # an earlier stage's weights, with fresh optimizer state
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(moved)):
    np.testing.assert_array_equal(a, b)
  assert int(state.step) == 0
  wider = jax.device_get(Trainer(EncoderDecoderModel(config.replace(vocab_size=256)),
                                 optimizers.adamw(1e-3), Partitioner((1, 1)),
                                 spec).init_state().params)
  with pytest.raises(ValueError, match=r"logits_dense.*\(32, 256\).*\(32, 128\)"):
    trainer.init_state(wider)
  del moved["encoder"]
  with pytest.raises(ValueError, match="missing"):
    trainer.init_state(moved)


def test_compiler_options_reach_the_compiled_step():
  """runner.train's compiler_options (gin: the CPU recipe's YNN setting) compile the step:
  the LM recipe's option gives the same step as without it; an unknown one is refused."""
  spec = {k: jax.ShapeDtypeStruct((16, 8), np.int32) for k in
          ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  batch = {k: v for k, v in CopyTask().batch(0).items() if k in spec}
  model = EncoderDecoderModel(get_config("tiny", vocab_size=128))
  losses = []
  for options in (None, {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}):
    trainer = Trainer(model, optimizers.adamw(1e-3), Partitioner((1, 1)), spec,
                      compiler_options=options)
    _, metrics = trainer.train_step(trainer.init_state(), batch)
    losses.append(float(metrics["loss"]))
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
  trainer = Trainer(model, optimizers.adamw(1e-3), Partitioner((1, 1)), spec,
                    compiler_options={"xla_no_such_option": "1"})
  with pytest.raises(Exception, match="xla_no_such_option"):
    trainer.train_step(trainer.init_state(), batch)
