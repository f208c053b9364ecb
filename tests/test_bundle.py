"""Inference bundles: export a tiny untrained system, load it without Flax, compare outputs."""
import json
import os
import shutil
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_bundle

from mgpt_jax.data.features import features_to_joints

from mgpt_jax.inference import motiongpt as mg
from mgpt_jax.inference.bundle import export_bundle, lm_functions
from mgpt_jax.inference.lm_checkpoint import load_lm
from mgpt_jax.inference.tokenize_dataset import Tokenizer
from mgpt_jax.lm import motion_span

MAX_INPUT, MAX_DECODE = tiny_bundle.MAX_INPUT, tiny_bundle.MAX_DECODE


@pytest.fixture(scope="module")
def system(tiny_system):
  """(tokenizer_dir, lm_dir, bundle_dir, MotionGPT): the session's tiny bundle (conftest)."""
  return tiny_system


def test_exported_functions_match_flax(system):
  tokenizer_dir, lm_dir, _, model = system
  module, params = load_lm(lm_dir)
  encoder, init_cache, step = lm_functions(module, MAX_INPUT, MAX_DECODE)
  tokens = model._prompt_tokens(["Generate motion: a person walks", "Generate text: hi"])
  np.testing.assert_allclose(model.encode(tokens), encoder(params, tokens), atol=1e-5)
  encoded = encoder(params, tokens)
  theirs, ours = init_cache(tokens), model.init_cache(tokens)
  prev = jnp.array([[0], [0]], jnp.int32)
  for token in (3, 7, 9):
    ref_logits, theirs = step(params, theirs, encoded, tokens, prev)
    logits, ours = model.decode_step(ours, encoded, tokens, prev)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    prev = jnp.full((2, 1), token, jnp.int32)
  tokenizer = Tokenizer.load(tokenizer_dir)
  codes = np.array([[1, 5, 7], [0, 31, 2]], np.int32)  # batch and length unlike the export's
  features = model.codes_to_features(codes)
  np.testing.assert_allclose(features, tokenizer.decode(codes), atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(model.features_to_codes(features), tokenizer.encode(features))


def test_text_to_motion_and_back(system):
  model = system[3]
  start = time.perf_counter()
  [(features, codes)] = model.text_to_motion(["a person walks forward"], seed=0)
  print(f"text_to_motion: {time.perf_counter() - start:.3f} s")
  assert features.shape == (4 * len(codes), 263) and np.isfinite(features).all()
  again = model.text_to_motion(["a person walks forward", "someone jumps"], seed=0,
                               max_length=8)
  assert len(again) == 2 and all(f.shape[0] == 4 * len(c) for f, c in again)
  captions = model.motion_to_text([features, codes, np.zeros((10, 263), np.float32)])
  assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
  with pytest.raises(ValueError, match="max_length 99"):
    model.text_to_motion(["x"], max_length=99)


def test_corrupted_file_fails_checksum(system, tmp_path):
  bundle = str(tmp_path / "copy")
  shutil.copytree(system[2], bundle)
  with open(os.path.join(bundle, mg.STD), "r+b") as f:
    f.seek(-1, os.SEEK_END)
    f.write(b"\x7f")
  with pytest.raises(mg.BundleError, match=r"std\.npy: sha256 .* does not match"):
    mg.MotionGPT.load(bundle)


def test_loads_in_a_fresh_process_without_training_code(system):
  script = (
      "import sys; from mgpt_jax.inference.motiongpt import MotionGPT\n"
      f"m = MotionGPT.load({system[2]!r})\n"
      "[(f, c)] = m.text_to_motion(['a person walks'], seed=1, max_length=6)\n"
      "assert f.shape == (4 * len(c), 263)\n"
      "bad = [n for n in sys.modules if n.startswith(('mgpt_jax.training', 'tasks', "
      "'mgpt_jax.lm.t5', 'mgpt_jax.tokenizer', 'mgpt_jax.lm.decoding', 'orbax'))]\n"
      "assert not bad, bad\n")
  env = {**os.environ, "XLA_FLAGS": ""}
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def test_bfloat16_bundle_and_no_silent_overwrite(system, tmp_path):
  tokenizer_dir, lm_dir, out, model = system
  with pytest.raises(FileExistsError, match="overwrite=True"):
    export_bundle(tokenizer_dir, lm_dir, out)
  half = mg.MotionGPT.load(export_bundle(tokenizer_dir, lm_dir, str(tmp_path / "bf16"), "bfloat16",
                                         max_input_length=MAX_INPUT, max_decode_length=8))
  assert half.config["lm"]["dtype"] == "bfloat16"
  assert jax.tree.leaves(half.lm_params)[0].dtype == jnp.bfloat16
  tokens = model._prompt_tokens(["Generate motion: a person walks"])
  full, reduced = np.asarray(model.encode(tokens)), np.asarray(half.encode(tokens), np.float32)
  np.testing.assert_allclose(reduced, full, atol=0.1 * np.abs(full).max())
  [(features, codes)] = half.text_to_motion(["a person walks"], seed=0)
  assert features.shape == (4 * len(codes), 263) and np.isfinite(features).all()


def test_cli_export_generate_caption(system, tmp_path, capsys):
  from mgpt_jax import cli
  tokenizer_dir, lm_dir, _, _ = system
  bundle = str(tmp_path / "cli_bundle")
  assert cli.main(["export", "--tokenizer-dir", tokenizer_dir, "--lm-dir", lm_dir,
                   "--out", bundle]) == 0
  assert cli.main(["export", "--tokenizer-dir", tokenizer_dir, "--lm-dir", lm_dir,
                   "--out", bundle]) == 2  # no silent overwrite
  assert "exists" in capsys.readouterr().err
  out, gif, bvh = (str(tmp_path / name) for name in ("m.npy", "m.gif", "m.bvh"))
  assert cli.main(["generate", bundle, "--text", "a person walks forward", "--seed", "1",
                   "--out", out, "--render", gif, "--bvh", bvh]) == 0
  features = np.load(out)
  assert features.ndim == 2 and np.isfinite(features).all()
  assert os.path.getsize(gif) > 0 and open(bvh).read().startswith("HIERARCHY")
  assert cli.main(["generate", bundle, "--text", "a person jumps", "--num-samples", "2",
                   "--out", str(tmp_path / "s.npy")]) == 0
  assert (tmp_path / "s_0.npy").exists() and (tmp_path / "s_1.npy").exists()
  capsys.readouterr()
  assert cli.main(["caption", bundle, out]) == 0  # greedy: the API's caption, same weights
  assert capsys.readouterr().out.strip() == system[3].motion_to_text([features])[0].strip()
  assert cli.main(["caption", bundle, str(tmp_path / "missing.npy")]) == 2
  # Prediction and in-between take features or joints; the prefix is the input's own codes.
  longer = system[3].codes_to_features(np.arange(10, dtype=np.int32)[None] % 7)[0]
  source_features, joints = str(tmp_path / "source.npy"), str(tmp_path / "joints.npy")
  np.save(source_features, longer)
  np.save(joints, features_to_joints(longer).astype(np.float32))
  for command, source in (("predict", source_features), ("inbetween", source_features),
                          ("predict", joints)):
    done = str(tmp_path / f"{command}.npy")
    assert cli.main([command, bundle, source, "--out", done, "--seed", "2"]) == 0, command
    assert np.isfinite(np.load(done)).all()
  assert cli.main(["inbetween", bundle, joints, "--out", done, "--as-joints"]) == 0
  assert np.load(done).shape[1:] == (22, 3)
  np.save(str(tmp_path / "bad.npy"), np.zeros((5, 7), np.float32))
  assert cli.main(["predict", bundle, str(tmp_path / "bad.npy"), "--out", done]) == 2
  assert "263-d" in capsys.readouterr().err
  np.save(str(tmp_path / "short.npy"), longer[:3])
  assert cli.main(["predict", bundle, str(tmp_path / "short.npy"), "--out", done]) == 2
  assert "expected >= 4" in capsys.readouterr().err


def test_predict_keeps_the_prefix_and_inbetween_masks_the_middle(system):
  model = system[3]
  codes = np.arange(20, dtype=np.int32) % 7
  (features, predicted), = model.predict([codes], seed=0, max_length=8)
  np.testing.assert_array_equal(predicted[:4], codes[:4])  # floor(0.2 * 20) codes shown
  assert len(features) == 4 * len(predicted)
  masked = motion_span.masked_string(codes)
  assert masked.count("<motion_id_514>") == 10  # codes 5..14 hidden, 5 kept on each side
  assert masked.startswith("<motion_id_512><motion_id_0><motion_id_1>")
  (_, filled), = model.inbetween([codes], seed=0, max_length=8)
  assert filled.ndim == 1 and filled.size >= 1


def test_the_official_demo_prompt_files_parse(shared_data):
  from mgpt_jax.inference import prompts
  files = {name: prompts.read_prompt_file(os.path.join(shared_data, "prompts", f"{name}.txt"))
           for name in ("t2m", "m2t", "pred", "inbetween")}
  assert {name: len(lines) for name, lines in files.items()} == {
      "t2m": 50, "m2t": 50, "pred": 10, "inbetween": 50}
  assert all(line.motion_path is None for line in files["t2m"])
  assert all(line.motion_path.endswith(".npy") for line in files["inbetween"])


def test_batch_answers_a_prompt_file(system, tmp_path, capsys):
  from mgpt_jax import cli
  motion_dir = tmp_path / "motions"
  motion_dir.mkdir()
  longer = system[3].codes_to_features(np.arange(8, dtype=np.int32)[None] % 5)[0]
  np.save(motion_dir / "000042.npy", longer)
  demo = tmp_path / "demo.txt"
  demo.write_text("Show me a person waving.\n\n"
                  "Explain <motion>.#/far/away/000042.npy\n"
                  "Predict motion: <Motion_Placeholder_s1>#datasets/h/000042.npy\n"
                  "Complete the masked motion: <Motion_Placeholder_Masked>#/x/missing.npy\n")
  out = tmp_path / "answers"
  assert cli.main(["batch", system[2], str(demo), "--out-dir", str(out), "--motion-dir",
                   str(motion_dir), "--seed", "3"]) == 0
  captured = capsys.readouterr()
  assert "answered 3 of 4 prompts" in captured.out
  assert "line 5" in captured.err and "missing.npy" in captured.err  # skipped, with why
  records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
  assert [r["line"] for r in records] == [1, 3, 4]
  prediction = records[2]["prompt"]
  assert prediction.startswith("Predict motion: <motion_id_512>")
  assert prediction.count("><") == 2  # som + floor(0.2 * 8) = 1 code + eom
  for record in records:
    assert ("motion" in record) != ("text" in record)
    if "motion" in record:
      assert np.isfinite(np.load(record["motion"])).all()
  bad = tmp_path / "bad.txt"
  bad.write_text("Describe this.#/x/000042.npy\n")
  assert cli.main(["batch", system[2], str(bad), "--out-dir", str(out)]) == 1
  assert "bad.txt:1" in capsys.readouterr().err
