"""The wheel works outside a checkout: its gin files resolve by the README's names.

One wheel is built from a copy of the sources and installed (--no-deps) into a fresh
virtualenv that reuses this environment's packages; every command then runs from a
directory that has no gin/ of its own.
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("setup.py", "README.md", "mgpt_jax", "tasks", "gin")  # what setup.py reads
TIMEOUT_S = 600


class Installed:

  def __init__(self, wheel: str, venv: str, workdir: str):
    self.wheel, self.venv, self.workdir = wheel, venv, workdir
    self.python = os.path.join(venv, "bin", "python")

  def run(self, *command, **env):
    """Runs a command of the virtualenv in the work directory; returns stdout."""
    env = {k: v for k, v in {**os.environ, **env}.items() if k != "PYTHONPATH" and v is not None}
    result = subprocess.run(command, cwd=self.workdir, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-5000:])
    return result.stdout


def _checked(command, cwd):
  result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
  assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-5000:])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  root = tmp_path_factory.mktemp("packaging")
  # A copy, so the build's build/ and egg-info never land in (or race on) the checkout.
  src = root / "src"
  for name in SOURCES:
    path = os.path.join(REPO, name)
    if os.path.isdir(path):
      shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      src.mkdir(exist_ok=True)
      shutil.copy(path, src / name)
  dist, venv, workdir = root / "dist", root / "venv", root / "elsewhere"
  workdir.mkdir()
  _checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--wheel-dir", str(dist), str(src)], root)
  (wheel,) = dist.glob("*.whl")
  _checked([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
           root)
  _checked([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--no-deps", "--no-index", str(wheel)], root)
  return Installed(str(wheel), str(venv), str(workdir))


def test_wheel_holds_every_gin_file(installed):
  in_checkout = {os.path.relpath(os.path.join(d, f), REPO)
                 for d, _, files in os.walk(os.path.join(REPO, "gin")) for f in files
                 if f.endswith(".gin")}
  with zipfile.ZipFile(installed.wheel) as wheel:
    names = set(wheel.namelist())
  in_wheel = {n[len("mgpt_jax/"):] for n in names if n.startswith("mgpt_jax/gin/")}
  assert in_checkout and in_wheel == in_checkout
  assert "tasks/templates/mgpt_templates.json" in names


def test_the_wheels_copy_is_imported_and_names_its_gin_dir(installed):
  out = installed.run(installed.python, "-c",
                      "import mgpt_jax; print(mgpt_jax.__file__)").strip()
  assert out.startswith(installed.venv), out  # not the editable checkout on site-packages
  search_paths = installed.run(installed.python, "-m", "mgpt_jax.gin_paths").strip().split(",")
  assert all(p.startswith(installed.venv) for p in search_paths), search_paths
  # Both spellings of a name resolve through them, as --gin_search_paths for t5x.train.
  for name in ("gin/pretrain.gin", "pretrain.gin", "gin/models/t5.gin", "models/vq.gin"):
    assert any(os.path.isfile(os.path.join(p, name)) for p in search_paths), name


def test_help(installed):
  assert "quickstart" in installed.run(os.path.join(installed.venv, "bin", "mgpt"), "--help")
  assert "--gin_file" in installed.run(installed.python, "-m", "mgpt_jax.train", "--help")


def test_includes_of_the_lm_stages_resolve(installed):
  # runner/pretrain.gin includes 'gin/stages/pretrain.gin', which includes 'gin/models/t5.gin'.
  out = installed.run(installed.python, "-c", "\n".join([
      "import gin",
      "from mgpt_jax import train",
      "train.configure(['--gin_file=gin/runner/pretrain.gin', '--gin_file=tasks/synthetic.gin',",
      "                 '--gin_file=models/t5_tiny.gin', \"--gin.MODEL_DIR='/unused'\"])",
      "print(gin.query_parameter('%PRETRAIN_MIXTURE'), gin.query_parameter('%LM_SIZE'))"]))
  assert out.split() == ["mgpt_synthetic_pretrain", "tiny"]


def test_two_tokenizer_steps_from_the_installed_gin_files(installed):
  model_dir = os.path.join(installed.workdir, "vq")
  installed.run(installed.python, "-m", "mgpt_jax.train", "--gin_file=gin/tokenizer_tiny.gin",
                "--gin_file=hardware/cpu.gin", f"--gin.MODEL_DIR='{model_dir}'",
                "--gin.TRAIN_STEPS=2", "--gin.cache.cached_dataset.num_motions=40",
                "--gin.reconstruction.ReconstructionEvaluator.max_clips=4", JAX_PLATFORMS="cpu",
                MGPT_CACHE_DIR=os.path.join(installed.workdir, "cache"),
                XLA_FLAGS=None)  # one CPU device: the quickest compile
  assert os.path.isdir(os.path.join(model_dir, "checkpoints", "2"))
  with open(os.path.join(model_dir, "summary.json"), encoding="utf-8") as f:
    assert list(json.load(f)["train"]) == ["2"]
