"""Every stage's gin files parse with each hardware file and say what they should."""
import gin
import pytest

from mgpt_jax import train as train_main


def value(name):
  """A binding's value, with macros (%X) evaluated."""
  v = gin.query_parameter(name)
  while isinstance(v, gin.config.ConfigurableReference) and v.evaluate:
    v = v.scoped_configurable_fn()
  return v


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize("stage, mixture, rate", [("pretrain", "mgpt_humanml3d_pretrain", 2e-4),
                                                   ("instruct", "mgpt_humanml3d_instruct", 1e-4)])
@pytest.mark.parametrize("hardware, mesh, rules, batch, microbatches", [
    ("gin/hardware/cpu.gin", (-1, 1), "data_parallel", 128, None),
    # Sized by the planner (README "Will it fit?"): T5-large on 8 A100-40GB, T5-XL on a v4-32.
    ("gin/hardware/lm_gpu_8x.gin", (8, 1), "fsdp", 128, 2),
    ("gin/hardware/lm_tpu_v4_32.gin", (8, 2), "fsdp", 256, 8)])
def test_runner_stages_parse(clean_gin, stage, mixture, rate, hardware, mesh, rules, batch,
                             microbatches):
  train_main.parse_config([f"gin/runner/{stage}.gin", "gin/models/t5_large.gin", hardware],
                          ["MODEL_DIR='/tmp/unused'", "DATA_DIR='/data/HumanML3D'",
                           "INITIAL_CHECKPOINT_PATH='/runs/pretrain'"])
  assert value("%MIXTURE_OR_TASK_NAME") == mixture
  assert value("%LEARNING_RATE") == rate
  assert value("%BATCH_SIZE") == batch
  assert value("%LM_SIZE") == "large"  # the one include picks the size
  assert value("%TASK_FEATURE_LENGTHS") == {"inputs": 256, "targets": 256}
  assert tuple(value("partitioning.Partitioner.mesh_shape")) == mesh
  assert value("partitioning.Partitioner.rules") == rules
  if microbatches:
    assert value("runner.train.microbatches") == microbatches
  assert (value("%INIT_PARAMS") is None) == (stage == "pretrain")


def test_synthetic_tasks_file_replaces_the_default_dataset(clean_gin):
  train_main.parse_config(["gin/runner/pretrain.gin", "gin/tasks/synthetic.gin",
                           "gin/models/t5_tiny.gin"],
                          ["MODEL_DIR='/tmp/unused'", "DATA_DIR='/tmp/data'"])
  assert value("%MIXTURE_OR_TASK_NAME") == "mgpt_synthetic_pretrain"
  assert value("%LM_SIZE") == "tiny"
  assert value("sources.locations.synthetic") == "/tmp/data"


def test_missing_data_dir_is_reported(clean_gin):
  train_main.parse_config(["gin/runner/pretrain.gin"], ["MODEL_DIR='/tmp/unused'"])
  from tasks import sources  # registered by the gin file's import
  with pytest.raises(ValueError, match="set DATA_DIR"):
    sources.dataset_root("humanml3d")
