"""Stage 1 end to end: sharded training, resume, learning, token export, gin files."""
import json
import os

import gin
import jax
import numpy as np
import pytest

from mgpt_jax import train as train_main
from mgpt_jax.data import formats
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.data.windows import WindowBatches
from mgpt_jax.inference.tokenize_dataset import Tokenizer, tokenize_dataset
from mgpt_jax.models.vq_model import VQModel
from mgpt_jax.tokenizer.vqvae import VQConfig
from mgpt_jax.training import optimizers, runner
from mgpt_jax.training.partitioning import Partitioner
from mgpt_jax.training.trainer import Trainer

TINY = VQConfig(num_codes=32, code_dim=16, width=32, depth=2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("stage1") / "data")
  write_dataset(out, 300, seed=1, progress=False)
  return out


@pytest.fixture(scope="module")
def windows(data_dir):
  return WindowBatches(data_dir, batch_size=16, window=32, seed=0)


def _run_steps(windows, partitioner, steps=3):
  model = VQModel(TINY)
  spec = {"motion": jax.ShapeDtypeStruct((16, 32, 263), np.float32)}
  trainer = Trainer(model, optimizers.adamw(1e-3), partitioner, spec, seed=0)
  state = trainer.init_state()
  for step in range(steps):
    state, _ = trainer.train_step(state, partitioner.global_batch(windows.batch(step)))
  return jax.device_get(state)


@pytest.mark.parametrize("rules", ["data_parallel", "fsdp"])
def test_eight_devices_match_one_device(windows, rules):
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  sharded_partitioner = Partitioner((8, 1), rules)
  sharded = _run_steps(windows, sharded_partitioner)
  single = _run_steps(windows, Partitioner((1, 1)))
  assert int(sharded.step) == 3
  for a, b in zip(jax.tree.leaves(sharded.model_state), jax.tree.leaves(single.model_state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # same codebook and EMA stats
  for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  if rules == "fsdp":  # parameters really are split along `data`
    trainer = Trainer(VQModel(TINY), optimizers.adamw(1e-3), sharded_partitioner,
                      {"motion": jax.ShapeDtypeStruct((16, 32, 263), np.float32)})
    kernel = trainer.state_shardings.params["encoder"]["down_0"]["kernel"]
    assert kernel.spec == jax.sharding.PartitionSpec(None, "data", None)


def _train(model_dir, windows, steps, every):
  return runner.train(model=VQModel(TINY), train_data=windows, optimizer=optimizers.adamw(1e-3),
                      model_dir=str(model_dir), num_steps=steps, checkpoint_every=every,
                      log_every=every, progress=False)


def test_resume_is_bit_identical(windows, tmp_path):
  straight, _ = _train(tmp_path / "straight", windows, 8, 4)
  _train(tmp_path / "resumed", windows, 4, 4)
  resumed, summary = _train(tmp_path / "resumed", windows, 8, 4)
  assert list(summary["train"]) == [4, 8]  # steps 5..8 ran the second time, 4 is history
  with open(tmp_path / "resumed" / "summary.json") as f:
    assert list(json.load(f)["train"]) == ["4", "8"]  # the whole history, across the resume
  for a, b in zip(jax.tree.leaves(jax.device_get(straight)), jax.tree.leaves(jax.device_get(resumed))):
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """The tiny gin configuration trained through the T5X-style entry point."""
  model_dir = str(tmp_path_factory.mktemp("vq_run"))
  gin.clear_config()
  _, summary = train_main.run([
      "--gin_file=tokenizer_tiny.gin", f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.DATA_DIR='{data_dir}'", "--gin.TRAIN_STEPS=600",
      "--gin.runner.train.eval_at_start=True", "--gin.runner.train.progress=False"])
  gin.clear_config()
  return model_dir, summary


def test_tiny_run_cuts_reconstruction_error(trained):
  model_dir, summary = trained
  before, after = summary["eval"][0], summary["eval"][600]
  assert after["loss_feature"] < 0.5 * before["loss_feature"]
  assert after["mpjpe_mm"] < 0.8 * before["mpjpe_mm"]
  assert after["pa_mpjpe_mm"] < 0.8 * before["pa_mpjpe_mm"]
  assert 0 < after["codebook_usage"] <= 1 and after["perplexity"] > 2
  train_losses = [m["loss"] for m in summary["train"].values()]
  assert train_losses[-1] < 0.5 * train_losses[0]
  assert os.path.exists(os.path.join(model_dir, "summary.json"))
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(model_dir))


def test_tokenize_dataset_writes_every_entry(trained, data_dir, tmp_path):
  model_dir, _ = trained
  report = tokenize_dataset(model_dir, data_dir, str(tmp_path / "TOKENS"), progress=False)
  data = formats.MotionDataset(data_dir)
  entries = [e for split in ("train", "val", "test") for e in data.entries(split).entries]
  assert report.written == len(entries) and not report.skipped
  assert any("@" in e.name for e in entries)  # sub-clips get their own files
  tokenizer = Tokenizer.load(model_dir)
  for entry in entries[:10]:
    codes = np.load(tmp_path / "TOKENS" / f"{entry.name}.npy")
    assert codes.shape == (1, entry.length // 4) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < tokenizer.module.config.num_codes
  # Same tokenizer, same motion, same tokens; and they decode to a motion of 4 frames per token.
  entry = entries[0]
  motion = data.motion(entry)[None, :entry.length // 4 * 4]
  np.testing.assert_array_equal(tokenizer.encode(motion),
                                np.load(tmp_path / "TOKENS" / f"{entry.name}.npy"))
  assert tokenizer.decode(tokenizer.encode(motion)).shape == motion.shape


@pytest.mark.parametrize("hardware, mesh", [("hardware/cpu.gin", (-1, 1)),
                                            ("hardware/gpu_8x.gin", (8, 1)),
                                            ("hardware/tpu_v4_32.gin", (16, 1))])
def test_full_size_gin_parses(hardware, mesh):
  gin.clear_config()
  try:
    train_main.parse_config(["tokenizer.gin", hardware], ["MODEL_DIR='/tmp/unused'"])
    assert gin.query_parameter("vqvae.VQConfig.num_codes") == 512
    assert gin.query_parameter("vqvae.VQConfig.width") == 512
    assert gin.query_parameter("%BATCH_SIZE") == 256
    assert tuple(gin.query_parameter("partitioning.Partitioner.mesh_shape")) == mesh
  finally:
    gin.clear_config()
