"""The dry-run planner (8 simulated devices), activation remat and gradient accumulation."""
import json
import math

import jax
import numpy as np
import optax
import pytest

from mgpt_jax import cli, train
from mgpt_jax.lm.config import get_config
from mgpt_jax.models.t5_model import EncoderDecoderModel
from mgpt_jax.training import accelerators, optimizers, planner
from mgpt_jax.training.partitioning import Partitioner
from mgpt_jax.training.trainer import Trainer

LM_FLAGS = ["--gin_file=gin/runner/pretrain.gin", "--gin.MODEL_DIR='/nonexistent'",
            "--gin.lm_config.get_config.vocab_size=32640",  # no vocabulary file needed
            "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 32}", "--gin.BATCH_SIZE=16"]


def _batch(rows=16, length=8, seed=0):
  """Copy-task rows with ragged padding, so micro-batches hold different token counts."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(2, 100, (rows, length))
  for row, n in enumerate(rng.integers(2, length + 1, rows)):
    tokens[row, n:] = 0
  decoder_input = np.concatenate([np.zeros((rows, 1), int), tokens[:, :-1]], axis=1)
  return {"encoder_input_tokens": tokens.astype(np.int32),
          "decoder_input_tokens": decoder_input.astype(np.int32),
          "decoder_target_tokens": tokens.astype(np.int32),
          "decoder_loss_weights": (tokens > 0).astype(np.int32)}


def _one_step(remat="none", microbatches=1):
  config = get_config("tiny", vocab_size=128, dropout_rate=0.0, remat_policy=remat)
  batch = _batch()
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  partitioner = Partitioner((2, 1))  # two data shards: micro-batches split each shard's rows
  # SGD with rate 1: the parameter change is the gradient itself (Adam's first step,
  # ~sign(g), would turn rounding noise on near-zero gradients into full-size changes).
  trainer = Trainer(EncoderDecoderModel(config, z_loss=1e-4), optax.sgd(1.0),
                    partitioner, spec, seed=0, microbatches=microbatches)
  state, metrics = trainer.train_step(trainer.init_state(), partitioner.global_batch(batch))
  return jax.device_get(state.params), jax.device_get(metrics)


@pytest.fixture(scope="module")
def plain_step():
  return _one_step()


@pytest.mark.parametrize("remat,microbatches", [("full", 1), ("none", 4)])
def test_remat_and_microbatches_give_the_plain_step(plain_step, remat, microbatches):
  params, metrics = _one_step(remat, microbatches)
  want_params, want_metrics = plain_step
  assert set(metrics) == set(want_metrics)
  for name in want_metrics:  # loss, z_loss, accuracy, target_tokens, grad_norm
    np.testing.assert_allclose(metrics[name], want_metrics[name], rtol=2e-5, err_msg=name)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(want_params)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bad_settings_are_named():
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in _batch().items()}
  model = EncoderDecoderModel(get_config("tiny", vocab_size=128))
  with pytest.raises(ValueError, match="microbatches=3"):
    Trainer(model, optimizers.adamw(1e-3), Partitioner((2, 1)), spec, microbatches=3)
  with pytest.raises(ValueError, match="remat_policy 'most'"):
    Trainer(EncoderDecoderModel(get_config("tiny", remat_policy="most")), optimizers.adamw(1e-3),
            Partitioner((1, 1)), spec)
  assert train.main(["--dry_run", "--devices=two"]) == 1  # the planner's one-line error


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
  out = tmp_path_factory.mktemp("plan") / "tiny.json"
  # A budget no model meets: the report must say it does not fit, and exit 2.
  code = cli.main(["plan", *LM_FLAGS, "--gin_file=gin/models/t5_tiny.gin", "--devices=8",
                   "--accelerator=tpu-v5e", "--memory_fraction=0.0001", f"--json={out}"])
  return code, json.loads(out.read_text())


def test_tiny_plan_bytes_match_parameter_count_and_optax(tiny_plan):
  code, record = tiny_plan
  assert code == 2 and record["fits"] is False and record["accelerator"] == "tpu-v5e"
  assert record["mesh"] == {"data": 8, "model": 1} and record["rules"] == "data_parallel"
  # Data parallel on 8 devices: every device holds all parameters and AdamW moments.
  config = get_config("tiny", vocab_size=32640)
  params = jax.eval_shape(EncoderDecoderModel(config).init_variables, jax.random.key(0),
                          {k: jax.ShapeDtypeStruct((2, 32), np.int32) for k in
                           ("encoder_input_tokens", "decoder_input_tokens",
                            "decoder_target_tokens")})["params"]
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
  assert record["param_count"] == count
  assert record["param_bytes"] == count * 4  # exact: float32, replicated
  # The stage's optimizer: AdamW under a schedule (whose step counter is state too).
  adam = jax.eval_shape(optimizers.adamw(optimizers.warmup_cosine(1e-4, 10, 100)).init, params)
  optax_bytes = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(adam))
  assert record["optimizer_bytes"] == optax_bytes  # exact (mu, nu and the step counters)
  state = record["param_bytes"] + record["optimizer_bytes"] + record["other_state_bytes"]
  # The compiled program's arguments are that state plus the batch (16 x 4 x 32 int32 / 8).
  assert record["batch_bytes"] == 16 * 4 * 32 * 4 // 8
  assert abs(record["compiled_argument_bytes"] - state - record["batch_bytes"]) <= 0.01 * state
  assert record["temp_bytes"] > 0 and record["flops"] > 0 and record["positions"] == 16 * 64
  # Every large tensor is replicated under data parallelism, and the report says so.
  assert "params/token_embedder/embedding" in record["replicated_large"]


def test_not_fitting_names_contributors_and_suggestions(tiny_plan):
  plan = planner.Plan(**{k: v for k, v in tiny_plan[1].items() if k in
                         planner.Plan.__dataclass_fields__ and k != "tensors"}, tensors=[])
  tight = accelerators.Accelerator("tiny-chip", 1e12, 2**20, 1e11)
  advice = planner.fit_advice(plan, tight, 0.9)
  assert advice[0].startswith("does NOT fit tiny-chip") and "largest:" in advice[0]
  assert any("rules='fsdp'" in line for line in advice)
  assert any("microbatches=" in line for line in advice)
  assert any("remat_policy" in line for line in advice)
  assert planner.fit_advice(plan, accelerators.get("h200"), 0.9) == []


def test_small_fsdp_plan_shards_state_eightfold():
  flags = train.parse_flags([*LM_FLAGS, "--gin_file=gin/models/t5_small.gin",
                             "--gin.partitioning.Partitioner.rules='fsdp'",
                             "--gin.partitioning.Partitioner.mesh_shape=(8, 1)"])
  plan = planner.plan_stage(planner._build(flags))  # pylint: disable=protected-access
  full = plan.param_count * 4
  # FSDP splits every tensor with an `embed` axis 8 ways; the rest (relative position
  # tables) stay whole: per-device bytes within 1 % of an eighth.
  assert full / 8 <= plan.param_bytes <= 1.01 * full / 8
  adam = 2 * full  # mu and nu mirror the parameters
  assert adam / 8 <= plan.optimizer_bytes <= 1.01 * adam / 8 + 64
  assert not plan.replicated_large()
  big = [t for t in plan.tensors if t.name == "params/token_embedder/embedding"][0]
  assert big.spec == "P(None, 'data')" and big.device_bytes == big.global_bytes // 8


def test_fsdp_rules_keep_activations_split_by_batch():
  # flax gives a mesh axis to the first rule claiming it: `batch` must win over `embed`, or
  # every activation (batch, length, embed) is whole on each device.
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from mgpt_jax.training.partitioning import FSDP_RULES  # pylint: disable=g-import-not-at-top
  P = jax.sharding.PartitionSpec
  assert nn.logical_to_mesh_axes(("batch", "length", "embed"), FSDP_RULES) == P("data", None, None)
  assert nn.logical_to_mesh_axes(("vocab", "embed"), FSDP_RULES) == P("model", "data")
