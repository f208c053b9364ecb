"""Bad inputs, as a careless or hostile user gives them (issue 16).

Every case asserts the exit status, that the message is one line naming the culprit, that
there is no traceback, and that nothing was written or changed. The commands run in-process
(cli.main with argv); one case runs the real interpreter entry point.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mgpt_jax import cli, errors
from mgpt_jax.data.synthetic import write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GIN = "--gin_file=tokenizer_tiny.gin"


# --------------------------------------------------------------------------- helpers


def snapshot(*roots) -> dict:
  """Every file and directory under `roots`, with the sha256 of each file."""
  state = {}
  for root in map(str, roots):
    if not os.path.exists(root):
      continue
    for directory, subdirs, files in os.walk(root):
      state[directory] = "dir"
      for name in files:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
          state[path] = hashlib.sha256(f.read()).hexdigest()
  return state


def refused(capsys, argv, *culprits, code=errors.EXIT_USER_ERROR, watch=()):
  """Runs `mgpt argv`; checks the status, one error line naming `culprits`, no traceback,
  and that nothing under `watch` (and no path named in argv) was created or changed."""
  watch = [str(w) for w in watch]
  before = snapshot(*watch)
  status = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  assert status == code, (status, out, err)
  assert "Traceback" not in out + err
  lines = [line for line in err.splitlines() if "error:" in line]
  assert len(lines) == 1, err
  for culprit in culprits:
    assert str(culprit) in lines[0], (culprit, lines[0])
  assert snapshot(*watch) == before, "something was written or changed"
  return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("bad_inputs") / "data")
  write_dataset(out, 12, seed=0, progress=False, workers=1)
  return out


@pytest.fixture
def data_copy(dataset, tmp_path):
  out = str(tmp_path / "data")
  shutil.copytree(dataset, out)
  return out


def _features(dataset, index=0):
  return os.path.join(dataset, "new_joint_vecs", sorted(os.listdir(
      os.path.join(dataset, "new_joint_vecs")))[index])


# --------------------------------------------------------------------------- data


def test_synth_refuses_a_directory_it_did_not_write(tmp_path, capsys):
  user = tmp_path / "HumanML3D"
  user.mkdir()
  (user / "train.txt").write_text("000000\n")
  (user / "Mean.npy").write_bytes(b"precious")
  refused(capsys, ["data", "synth", user, "--num-motions", "2"], user, "--overwrite",
          watch=[user])


def test_synth_refuses_a_file_as_directory(tmp_path, capsys):
  target = tmp_path / "file"
  target.write_text("x")
  refused(capsys, ["data", "synth", target, "--num-motions", "2"], target, "not a directory",
          watch=[tmp_path])


def test_synth_refuses_zero_motions(tmp_path, capsys):
  refused(capsys, ["data", "synth", tmp_path / "new", "--num-motions", "0"], "num_motions",
          watch=[tmp_path])


def test_synth_rewrites_its_own_directory(tmp_path, capsys):
  out = tmp_path / "synth"
  assert cli.main(["data", "synth", str(out), "--num-motions", "2", "--workers", "1"]) == 0
  assert cli.main(["data", "synth", str(out), "--num-motions", "2", "--workers", "1"]) == 0
  capsys.readouterr()


@pytest.mark.parametrize("command", ["to-joints", "to-features"])
def test_conversion_output_equal_to_input(dataset, tmp_path, capsys, command):
  source = tmp_path / "in.npy"
  shutil.copy(_features(dataset) if command == "to-joints"
              else _features(dataset).replace("new_joint_vecs", "new_joints"), source)
  refused(capsys, ["data", command, source, source], source, "output is the input",
          watch=[tmp_path])


@pytest.mark.parametrize("command,shape", [("to-joints", (0, 263)), ("to-features", (0, 22, 3))])
def test_conversion_of_an_empty_clip(tmp_path, capsys, command, shape):
  source = tmp_path / "empty.npy"
  np.save(source, np.zeros(shape, np.float32))
  refused(capsys, ["data", command, source, tmp_path / "out.npy"], source, "empty clip",
          watch=[tmp_path])


def test_text_renamed_npy_is_not_called_a_pickle(tmp_path, capsys):
  source = tmp_path / "notes.npy"
  source.write_text("hello, this is text\n")
  line = refused(capsys, ["data", "to-joints", source, tmp_path / "out.npy"], source,
                 "starts with b'hello,'", watch=[tmp_path])
  assert "pickle" not in line


def test_object_array_is_never_unpickled(tmp_path, capsys):
  source = tmp_path / "objects.npy"
  np.save(source, np.array([{"a": 1}], dtype=object), allow_pickle=True)
  refused(capsys, ["data", "to-joints", source, tmp_path / "out.npy"], source,
          "never loaded", watch=[tmp_path])


def test_complex_features_are_refused(tmp_path, capsys):
  source = tmp_path / "complex.npy"
  np.save(source, np.zeros((30, 263), np.complex64))
  refused(capsys, ["data", "to-joints", source, tmp_path / "out.npy"], source, "complex64",
          watch=[tmp_path])


def test_truncated_npy(dataset, tmp_path, capsys):
  source = tmp_path / "cut.npy"
  source.write_bytes(open(_features(dataset), "rb").read()[:300])
  refused(capsys, ["data", "to-joints", source, tmp_path / "out.npy"], source, "truncated",
          watch=[tmp_path])


def test_nan_features(tmp_path, capsys):
  source = tmp_path / "nan.npy"
  features = np.zeros((30, 263), np.float32)
  features[7, 3] = np.nan
  np.save(source, features)
  refused(capsys, ["data", "to-joints", source, tmp_path / "out.npy"], source, "frame 7",
          watch=[tmp_path])


def test_unknown_feature_width(tmp_path, capsys):
  source = tmp_path / "wide.npy"
  np.save(source, np.zeros((30, 100), np.float32))
  refused(capsys, ["data", "to-joints", source, tmp_path / "out.npy"], source, "100-d",
          watch=[tmp_path])


def test_missing_input_file(tmp_path, capsys):
  refused(capsys, ["data", "to-joints", tmp_path / "nope.npy", tmp_path / "out.npy"],
          "nope.npy", "not found", watch=[tmp_path])


def test_validate_missing_directory(tmp_path, capsys):
  refused(capsys, ["data", "validate", tmp_path / "nowhere"], "nowhere", watch=[tmp_path])


def _validate(capsys, data_dir):
  status = cli.main(["data", "validate", data_dir])
  out, err = capsys.readouterr()
  assert "Traceback" not in out + err
  return status, out


def test_validate_names_an_empty_clip_and_goes_on(data_copy, capsys):
  empty = _features(data_copy, 1)
  np.save(empty, np.zeros((0, 263), np.float32))
  nan = _features(data_copy, 5)
  features = np.load(nan)
  features[2, 0] = np.inf
  np.save(nan, features)
  before = snapshot(data_copy)
  status, out = _validate(capsys, data_copy)
  assert status == 1
  assert f"{empty}: empty clip" in out  # named, and the check went on to later clips:
  assert f"{nan}: NaN or Inf" in out
  assert snapshot(data_copy) == before


def test_validate_reports_an_empty_split(data_copy, capsys):
  open(os.path.join(data_copy, "test.txt"), "w").close()
  status, out = _validate(capsys, data_copy)
  assert status == 1 and "test.txt: empty split" in out


def test_validate_reports_complex_features(data_copy, capsys):
  path = _features(data_copy, 2)
  np.save(path, np.load(path).astype(np.complex64))
  status, out = _validate(capsys, data_copy)
  assert status == 1 and f"{path}: dtype complex64" in out


def test_validate_infers_the_kind_by_majority(data_copy, capsys):
  outlier = _features(data_copy, 0)
  np.save(outlier, np.zeros((40, 251), np.float32))
  status, out = _validate(capsys, data_copy)
  assert status == 1
  assert "(humanml3d)" in out.splitlines()[0]  # 11 of 12 files are 263-d
  assert f"{outlier}: has 251-d features" in out


def test_validate_reports_a_non_utf8_caption(data_copy, capsys):
  text = os.path.join(data_copy, "texts", os.path.basename(_features(data_copy, 3))[:-4] + ".txt")
  with open(text, "ab") as f:
    f.write(b"caf\xe9#caf/NOUN#0.0#0.0\n")
  status, out = _validate(capsys, data_copy)
  assert status == 1 and f"{text}" in out and "not UTF-8" in out


# --------------------------------------------------------------------------- training


def _train_argv(tmp_path, dataset, *flags):
  return ["train", TINY_GIN, f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
          f"--gin.DATA_DIR='{dataset}'", "--gin.runner.train.progress=False", *flags]


@pytest.mark.parametrize("flag,culprit", [
    ("--gin.TRAIN_STEPS=0", "TRAIN_STEPS = 0"),
    ("--gin.TRAIN_STEPS=-5", "TRAIN_STEPS = -5"),
    ("--gin.BATCH_SIZE=-4", "BATCH_SIZE = -4"),
    ("--gin.BATCH_SIZE=0", "BATCH_SIZE = 0"),
    ("--gin.BATCH_SIZE=2.5", "BATCH_SIZE = 2.5"),
    ("--gin.TRAIN_STEP=5", "did you mean TRAIN_STEPS"),
    ("--gin.runner.train.num_step=3", "num_step"),
    ("--gin.BATCH_SIZE=12", "multiple of 8"),
    ("--process_count=two", "--process_count"),
    ("--gin_flie=x.gin", "--gin_flie"),
    ("--gin.TRAIN_STEPS", "has no value"),
])
def test_train_refuses_nonsense_before_work(tmp_path, dataset, capsys, flag, culprit):
  if "multiple of 8" in culprit:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.device_count() != 8:
      pytest.skip("needs 8 devices")
  refused(capsys, _train_argv(tmp_path, dataset, flag), culprit, watch=[tmp_path, dataset])
  assert not (tmp_path / "run").exists()


def test_train_missing_gin_file(tmp_path, capsys):
  refused(capsys, ["train", "--gin_file=gin/no_such.gin"], "no_such.gin", "not found",
          watch=[tmp_path])


def test_train_without_gin_file(capsys):
  refused(capsys, ["train", "--gin.TRAIN_STEPS=3"], "--gin_file")


def test_train_missing_data_dir(tmp_path, capsys):
  refused(capsys, _train_argv(tmp_path, tmp_path / "no_data"), "no_data", watch=[tmp_path])
  assert not (tmp_path / "run").exists()


def test_train_help(capsys):
  assert cli.main(["train", "--help"]) == 0
  assert "--gin_file" in capsys.readouterr().out


def test_train_entry_point_in_a_real_interpreter(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "mgpt_jax.train", "--gin_file=gin/tokenizer_tiny.gin",
       f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.TRAIN_STEPS=0"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "mgpt train: error: TRAIN_STEPS = 0 (runner.train.num_steps): expected an integer >= 1")
  assert not (tmp_path / "run").exists()


def test_run_directory_is_locked(tmp_path, dataset, capsys):
  from mgpt_jax.training import run_lock  # pylint: disable=g-import-not-at-top
  with run_lock.locked(str(tmp_path / "run")):
    before = snapshot(tmp_path / "run")
    refused(capsys, _train_argv(tmp_path, dataset, "--gin.TRAIN_STEPS=2"),
            str(tmp_path / "run"), "in use by another run")
    assert snapshot(tmp_path / "run") == before


# --------------------------------------------------------------------------- import-hf

TINY_T5 = {"model_type": "t5", "vocab_size": 40, "d_model": 16, "num_heads": 2, "d_kv": 8,
           "d_ff": 24, "num_layers": 1, "feed_forward_proj": "relu"}


def _hf_dir(path, config=None, weights_config=None):
  """A transformers T5 directory written from numpy: config.json + model.safetensors."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from mgpt_jax.lm import hf_convert  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  ours = hf_convert.config_from_hf(weights_config or TINY_T5)
  rng = np.random.default_rng(0)
  state = {name: rng.normal(size=hf_convert.hf_shape(name, ours)).astype(np.float32)
           for name in hf_convert.hf_names(ours)}
  save_file(state, os.path.join(path, "model.safetensors"))
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config or TINY_T5, f)
  return str(path)


def test_import_hf_config_disagrees_with_weights(tmp_path, capsys):
  hf = _hf_dir(tmp_path / "hf", config={**TINY_T5, "d_model": 32})
  refused(capsys, ["import-hf", hf, tmp_path / "out"], "shared.weight", "(40, 16)",
          "d_model 32", watch=[tmp_path])


def test_import_hf_works_on_the_matching_config(tmp_path, capsys):
  hf = _hf_dir(tmp_path / "hf")
  assert cli.main(["import-hf", hf, str(tmp_path / "out")]) == 0
  capsys.readouterr()
  refused(capsys, ["import-hf", hf, tmp_path / "out"], "--overwrite", watch=[tmp_path])


@pytest.mark.parametrize("content,culprit", [
    ("{not json", "not valid JSON"),
    ('{"model_type": "t5", "d_model": 16}', "lacks integer"),
    ('{"model_type": "bert", "vocab_size": 1, "d_model": 1, "num_heads": 1, "d_kv": 1, '
     '"d_ff": 1, "num_layers": 1}', "'bert' is not T5"),
])
def test_import_hf_bad_config(tmp_path, capsys, content, culprit):
  hf = _hf_dir(tmp_path / "hf")
  with open(os.path.join(hf, "config.json"), "w") as f:
    f.write(content)
  refused(capsys, ["import-hf", hf, tmp_path / "out"], "config.json", culprit, watch=[tmp_path])


def test_import_hf_without_weights(tmp_path, capsys):
  hf = _hf_dir(tmp_path / "hf")
  os.remove(os.path.join(hf, "model.safetensors"))
  refused(capsys, ["import-hf", hf, tmp_path / "out"], "model.safetensors", watch=[tmp_path])


def test_import_hf_vocab_too_small(tmp_path, capsys):
  hf = _hf_dir(tmp_path / "hf")
  refused(capsys, ["import-hf", hf, tmp_path / "out", "--vocab-size", "100"], "--vocab-size 100",
          "555", watch=[tmp_path])


# --------------------------------------------------------------------------- bundle / inference


@pytest.fixture
def fake_bundle(tmp_path):
  """A bundle directory whose manifest is right; its contents are not a model."""
  from mgpt_jax.inference import bundle, motiongpt as mg  # pylint: disable=g-import-not-at-top
  out = tmp_path / "bundle"
  out.mkdir()
  for name in (mg.CONFIG, mg.VOCABULARY, mg.LM_PARAMS, mg.VQ_PARAMS, mg.MEAN, mg.STD,
               mg.SENTENCEPIECE, *map(mg.function_file, mg.FUNCTIONS)):
    (out / name).write_text("{}" if name.endswith(".json") else name)
  bundle._write_manifest(str(out))  # pylint: disable=protected-access
  return out


def _manifest(bundle_dir):
  with open(bundle_dir / "manifest.json") as f:
    return json.load(f)


def test_bundle_with_a_flipped_byte(fake_bundle, capsys):
  data = bytearray((fake_bundle / "lm_params.npz").read_bytes())
  data[0] ^= 1
  (fake_bundle / "lm_params.npz").write_bytes(bytes(data))
  refused(capsys, ["caption", fake_bundle, "x.npy"], "lm_params.npz", "sha256",
          watch=[fake_bundle])


def test_bundle_config_left_out_of_the_manifest(fake_bundle, capsys):
  manifest = _manifest(fake_bundle)
  del manifest["files"]["config.json"]
  (fake_bundle / "manifest.json").write_text(json.dumps(manifest))
  (fake_bundle / "config.json").write_text('{"edited": true}')
  refused(capsys, ["caption", fake_bundle, "x.npy"], "config.json", "not listed",
          watch=[fake_bundle])


def test_bundle_with_an_unlisted_file(fake_bundle, capsys):
  (fake_bundle / "extra.jaxexport").write_text("sneaky")
  refused(capsys, ["caption", fake_bundle, "x.npy"], "extra.jaxexport", watch=[fake_bundle])


def test_bundle_manifest_not_json(fake_bundle, capsys):
  (fake_bundle / "manifest.json").write_text("{")
  refused(capsys, ["caption", fake_bundle, "x.npy"], "manifest.json", "not valid JSON",
          watch=[fake_bundle])


def test_bundle_missing(tmp_path, capsys):
  refused(capsys, ["caption", tmp_path / "none", "x.npy"], "manifest.json", "missing",
          watch=[tmp_path])


@pytest.mark.parametrize("flags,culprit", [
    (["--num-samples", "0"], "--num-samples 0"),
    (["--render", "clip.png"], "clip.png"),
    (["--bvh", "clip.txt"], "--bvh clip.txt"),
])
def test_generate_flags_refused_before_generating(fake_bundle, tmp_path, capsys, flags, culprit):
  (fake_bundle / "lm_params.npz").write_text("broken")  # never reached: flags come first
  refused(capsys, ["generate", fake_bundle, "--text", "a person walks", *flags], culprit,
          watch=[tmp_path])


def test_generate_empty_text(fake_bundle, tmp_path, capsys):
  refused(capsys, ["generate", fake_bundle, "--text", "  "], "--text", watch=[tmp_path])


def test_batch_refuses_a_user_directory(fake_bundle, tmp_path, capsys):
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("a person walks\n")
  user = tmp_path / "mine"
  user.mkdir()
  (user / "0001.npy").write_text("mine")
  refused(capsys, ["batch", fake_bundle, prompts, "--out-dir", user], user, "--overwrite",
          watch=[tmp_path])


def test_prompt_file_bad_lines_are_skipped_not_fatal(tmp_path):
  from mgpt_jax.inference import prompts  # pylint: disable=g-import-not-at-top
  path = tmp_path / "prompts.txt"
  path.write_bytes(b"a person walks\n\xff\xfe broken\nDescribe this.#/x/1.npy\n"
                   b"Explain <motion>.#/x/2.npy\n")
  skipped = []
  lines = prompts.read_prompt_file(str(path), skipped)
  assert [line.line for line in lines] == [1, 4]
  assert len(skipped) == 2 and f"{path}:2" in skipped[0] and f"{path}:3" in skipped[1]


# --------------------------------------------------------------------------- the error policy


def test_unexpected_errors_are_one_line_and_verbose_shows_the_traceback(monkeypatch, capsys):
  def broken(args):
    raise RuntimeError("a bug")
  monkeypatch.setattr(cli, "cmd_validate", broken)
  assert cli.main(["data", "validate", "x"]) == errors.EXIT_INTERNAL_ERROR
  err = capsys.readouterr().err
  assert "Traceback" not in err and "internal error: RuntimeError: a bug" in err
  assert "--verbose" in err
  assert cli.main(["data", "validate", "x", "--verbose"]) == errors.EXIT_INTERNAL_ERROR
  assert "Traceback" in capsys.readouterr().err


def test_unknown_command(capsys):
  assert cli.main(["fly"]) == 2
  assert "invalid choice: 'fly'" in capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoints
# tools/kill_test.py: kills, restarts, summary history and the truncated-checkpoint fallback,
# in one interpreter whose forked children share one compilation.


def test_kill_test_three_kills(tmp_path):
  record_path = tmp_path / "kill.json"
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, "tools", "kill_test.py"), "--kills", "3", "--steps",
       "8", "--workdir", str(tmp_path / "work"), "--json", str(record_path)],
      capture_output=True, text=True, timeout=900,
      env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  record = json.loads(record_path.read_text())
  # Every round's final state and summary.json history equal the uninterrupted run's.
  assert record["kills"] == 3 and record["identical"] and record["identical_rounds"] >= 1
  # A truncated latest checkpoint is reported, and the previous one is used.
  assert record["truncated_reported"] and record["truncated_recovered"]
