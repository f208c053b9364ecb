import os

# 8 CPU devices for the sharding tests; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
SHARED_DATA = os.path.join(SHARED, "data")


@pytest.fixture(scope="session")
def shared_data():
  """../shared/data (real research-only fixtures); tests using it skip where it is absent."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f"real fixtures not found at {SHARED_DATA} (../shared beside the project root)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_system(tmp_path_factory):
  """(tokenizer_dir, lm_dir, bundle_dir, loaded MotionGPT) of tests/tiny_bundle.py, built once."""
  import time  # pylint: disable=g-import-not-at-top
  import tiny_bundle  # pylint: disable=g-import-not-at-top
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  tokenizer_dir, lm_dir, bundle_dir = tiny_bundle.build(str(tmp_path_factory.mktemp("bundle")))
  start = time.perf_counter()
  model = MotionGPT.load(bundle_dir)
  print(f"bundle {sum(e['bytes'] for e in model.manifest['files'].values()) / 1e6:.2f} MB, "
        f"load {time.perf_counter() - start:.2f} s")
  return tokenizer_dir, lm_dir, bundle_dir, model
