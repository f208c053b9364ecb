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
from mgpt_jax.inference.bundle import export_bundle, generation_functions
from mgpt_jax.inference.lm_checkpoint import load_lm
from mgpt_jax.inference.tokenize_dataset import Tokenizer
from mgpt_jax.lm import motion_span
from mgpt_jax.lm.t5 import Transformer

MAX_INPUT, MAX_DECODE = tiny_bundle.MAX_INPUT, tiny_bundle.MAX_DECODE
TEXTS = tiny_bundle.TEXTS


@pytest.fixture(scope="module")
def system(tiny_system):
  """(tokenizer_dir, lm_dir, bundle_dir, MotionGPT): the session's tiny bundle (conftest)."""
  return tiny_system


def test_exported_generation_matches_flax_decoding(system):
  """The bundle's one-call generation is lm/decoding.py's, traced from Flax: same answers."""
  tokenizer_dir, lm_dir, _, model = system
  module, params = load_lm(lm_dir)
  module = Transformer(module.config.replace(dropout_rate=0.0))
  prompts = [f"Generate motion: {t}" for t in TEXTS[:3]] + ["Generate text: hi"]
  tokens = model.prompt_tokens(prompts)
  fns = generation_functions(module, MAX_DECODE, model.vocab.vocab_size)
  start = [model.vocab.som_id, model.vocab.motion_id(5), model.vocab.motion_id(6)]
  forced = model.forced_ids([start, [], [], []], 4)  # row 0 must begin with `start`
  steps = (np.int32(MAX_DECODE), np.int32(0), forced)
  for name, args in (("greedy", steps),
                     ("sample", steps + (np.full(4, 5, np.int32), np.arange(4, dtype=np.int32),
                                         np.float32(0.8), np.int32(20), np.float32(0.9)))):
    ours = [np.asarray(x) for x in model._fns[f"generate_{name}"](model.lm_params, tokens, *args)]
    flax = [np.asarray(x) for x in jax.jit(fns[name])(params, tokens, *args)]
    np.testing.assert_array_equal(ours[0], flax[0], err_msg=name)
    np.testing.assert_array_equal(ours[1], flax[1], err_msg=name)
    np.testing.assert_array_equal(ours[0][0, :3], start, err_msg=name)
    if name == "greedy":
      for row, answer in enumerate(model.generate(prompts, MAX_DECODE)):
        if row:  # the free rows answer as they do without starts
          np.testing.assert_array_equal(answer, flax[0][row, :flax[1][row]])
      started = model.generate(prompts[:1], MAX_DECODE, starts=[start])[0]
      np.testing.assert_array_equal(started, flax[0][0, :flax[1][0]])
  longer = model.generate(prompts[:1], 12, min_length=12)[0]
  assert len(longer) == 12 and 1 not in longer[:-1]  # no EOS before min_length
  beams = model.generate(prompts, MAX_DECODE, num_beams=4)
  assert len(beams) == 4 and all(len(b) >= 1 for b in beams)
  tokenizer = Tokenizer.load(tokenizer_dir)
  codes = np.array([[1, 5, 7], [0, 31, 2]], np.int32)  # batch and length unlike the export's
  features = model.codes_to_features(codes)
  np.testing.assert_allclose(features, tokenizer.decode(codes), atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(model.features_to_codes(features), tokenizer.encode(features))
  # Rows of other lengths in one padded bucket come back as each alone.
  ragged = [np.array([3, 1, 4, 1, 5], np.int32), np.array([9], np.int32), codes[0]]
  for row, got in zip(ragged, model.decode_codes(ragged)):
    np.testing.assert_allclose(got, tokenizer.decode(row[None])[0], atol=1e-5, rtol=1e-5)
  motions = [tokenizer.decode(row[None])[0] for row in ragged]
  for motion, got in zip(motions, model.encode_motions(motions)):
    np.testing.assert_array_equal(got, tokenizer.encode(motion[None])[0])


def test_seeds_do_not_depend_on_the_batch(system):
  """Row i of a call samples with the key of (seed, i): splitting a list changes nothing."""
  model = system[3]
  prompts = [f"Generate motion: {t}" for t in TEXTS[:4]]
  whole = model.generate(prompts, MAX_DECODE, seed=7)
  parts = model.generate(prompts[:2], MAX_DECODE, seed=7) + model.generate(
      prompts[2:], MAX_DECODE, seed=7, rows=range(2, 4))
  for a, b in zip(whole, parts):
    np.testing.assert_array_equal(a, b)
  again = model.generate(prompts, MAX_DECODE, seed=7)
  assert all(np.array_equal(a, b) for a, b in zip(whole, again))
  other = model.generate(prompts, MAX_DECODE, seed=8)
  assert not all(np.array_equal(a, b) for a, b in zip(whole, other))
  assert len(model.generate(prompts, 3, seed=7)[0]) <= 3  # the step limit is a call argument


def test_buckets_bound_the_compilations(system):
  """Batch sizes and motion lengths compile a handful of programs, counted by jax.jit."""
  model = system[3]
  rng = np.random.default_rng(0)
  before = model.compile_counts()
  for n in (1, 2, 3, 4):
    model.generate(["Generate text: hi"] * n, 4)
  lengths = list(range(1, 40, 3))
  model.decode_codes([rng.integers(0, 32, n) for n in lengths])
  model.encode_motions([rng.normal(size=(4 * n, 263)).astype(np.float32) for n in lengths])
  counts = model.compile_counts()
  print(f"compilations: {counts} (before these calls: {before})")
  assert counts["generate_greedy"] <= 3  # batches of 1, 2 and 4 rows, whatever came before
  # 13 lengths in 4 buckets (8, 16, 32, 64 codes): one padded batch each
  assert counts["vq_decoder"] - before["vq_decoder"] <= 4
  assert counts["vq_encoder"] - before["vq_encoder"] <= 4
  model.decode_codes([rng.integers(0, 32, n) for n in lengths[::-1]])
  assert model.compile_counts() == counts  # the same buckets again: nothing new
  assert mg.code_bucket(49) == 64 and mg.code_bucket(150) == 256 and mg.code_bucket(300) == 512


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
      "import sys, time; start = time.perf_counter()\n"
      "from mgpt_jax.inference.motiongpt import MotionGPT\n"
      f"m = MotionGPT.load({system[2]!r})\n"
      "print(f'import + load {time.perf_counter() - start:.2f} s')\n"
      "[f] = m.decode_codes([[1, 2, 3]])\n"
      "assert f.shape == (12, 263) and m.vocab.decode(m.vocab.encode('a person')) == 'a person'\n"
      "bad = [n for n in sys.modules if n.startswith(('mgpt_jax.training', 'tasks', "
      "'mgpt_jax.lm.t5', 'mgpt_jax.tokenizer', 'mgpt_jax.lm.decoding', 'orbax', 'flax', "
      "'tensorflow', 'seqio', 'mgpt_jax.lm.vocab'))and n != 'mgpt_jax.lm.vocab_core']\n"
      "assert not bad, bad\n")
  env = {**os.environ, "XLA_FLAGS": ""}
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  print(result.stdout.strip())


@pytest.fixture(scope="module")
def reduced(system, tmp_path_factory):
  """The same system exported with bfloat16 and with int8 weights."""
  tokenizer_dir, lm_dir, _, _ = system
  root = tmp_path_factory.mktemp("reduced")
  return {dtype: mg.MotionGPT.load(export_bundle(
      tokenizer_dir, lm_dir, str(root / dtype), dtype, max_input_length=MAX_INPUT,
      max_decode_length=MAX_DECODE)) for dtype in ("bfloat16", "int8")}


def test_bfloat16_and_int8_bundles(system, reduced):
  tokenizer_dir, lm_dir, out, model = system
  with pytest.raises(FileExistsError, match="overwrite=True"):
    export_bundle(tokenizer_dir, lm_dir, out)
  half, int8 = reduced["bfloat16"], reduced["int8"]
  assert half.config["lm"]["dtype"] == "bfloat16"
  assert jax.tree.leaves(half.lm_params)[0].dtype == jnp.bfloat16
  sizes = {name: os.path.getsize(os.path.join(m.bundle_dir, mg.LM_PARAMS))
           for name, m in (("float32", model), ("bfloat16", half), ("int8", int8))}
  # A tiny model: its per-channel scales and float32 vectors weigh more than in real sizes (~0.25).
  assert sizes["int8"] < 0.4 * sizes["float32"] and sizes["bfloat16"] < 0.55 * sizes["float32"]
  kernel = int8.lm_params["decoder"]["layers_0"]["mlp"]["wo"]["kernel"]  # (mlp, embed) as float
  config = model.config["lm"]
  assert kernel["int8"].dtype == np.int8 and kernel["int8"].shape == (config["emb_dim"],
                                                                      config["mlp_dim"])
  assert kernel["scale"].shape == (config["emb_dim"],)
  assert int8.config["cpu_kernels"] is True
  assert model.config["cpu_kernels"] is False  # no float32 matrix of MIN_PANEL_WEIGHTS
  assert (int8.config["compute_dtype"], half.config["compute_dtype"]) == ("float32", "bfloat16")
  assert (model.min_rows, half.min_rows, int8.min_rows) == (1, 2, 1)
  one = half.generate(["Generate motion: a person walks"], MAX_DECODE)[0]  # padded to 2 rows
  np.testing.assert_array_equal(one, half.generate(["Generate motion: a person walks"] * 2,
                                                   MAX_DECODE)[1])
  prompts = [f"Generate motion: {t}" for t in TEXTS[:4]]
  full = model.generate(prompts, MAX_DECODE)
  for name, reduced_model in reduced.items():
    answers = reduced_model.generate(prompts, MAX_DECODE)
    same = np.mean([np.mean(a[:min(len(a), len(b))] == b[:min(len(a), len(b))])
                    for a, b in zip(full, answers)])
    print(f"{name}: {same:.0%} greedy tokens as float32, LM params {sizes[name] / 1e6:.2f} MB")
    [(features, codes)] = reduced_model.text_to_motion(["a person walks"], seed=0)
    assert features.shape == (4 * len(codes), 263) and np.isfinite(features).all()


def test_measure_quantization_compares_each_dtype_with_float32(system, reduced, tmp_path):
  """tools/measure_quantization.py: the test split's prompts of both tasks, and each dtype's
  agreement and logit error against float32's own answers."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("measure_quantization", os.path.join(
      os.path.dirname(__file__), "..", "tools", "measure_quantization.py"))
  mq = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mq)
  from mgpt_jax.data.formats import MotionDataset  # pylint: disable=g-import-not-at-top
  from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / "data")
  write_dataset(data_dir, 12, seed=0, progress=False, workers=1)
  test_ids = MotionDataset(data_dir).split_ids("test")
  os.makedirs(os.path.join(data_dir, "TOKENS"))
  np.save(os.path.join(data_dir, "TOKENS", test_ids[0] + ".npy"), np.array([[3, 1, 4, 1]]))
  prompts, tasks = mq.split_prompts(data_dir, 2 * len(test_ids))
  # Every test motion's caption, and motion-to-text only where TOKENS/ has its codes.
  assert tasks == [mq.TASKS[0]] * len(test_ids) + [mq.TASKS[1]]
  assert prompts[-1] == mg.M2T_PROMPT.format(motion_span.codes_to_string([3, 1, 4, 1]))
  # The tiny bundle's 40 pieces spell the synthetic captions in more tokens than it takes.
  prompts = ([mg.T2M_PROMPT.format(t) for t in TEXTS[:3]] + prompts[-1:]
             + [mg.M2T_PROMPT.format(motion_span.codes_to_string([5, 9, 2, 6]))])
  tasks = [mq.TASKS[0]] * 3 + [mq.TASKS[1]] * 2
  rows, answers = mq.measure({"float32": system[3], **reduced}, prompts, tasks, MAX_DECODE)
  assert [r["dtype"] for r in rows] == ["float32", "bfloat16", "int8"]
  reference = rows[0]
  assert reference["max_error"] == 0 and all(
      reference[k] == 1 for k in ("same_tokens", "same_answers", "same_next") + mq.TASKS)
  for r in rows[1:]:
    assert 0 < r["mean_error"] <= r["max_error"] and 0 < r["relative_error"] < 0.1
    assert all(0 <= r[k] <= 1 for k in ("same_tokens", "same_answers", "same_next") + mq.TASKS)
    print(f"{r['dtype']}: same tokens {r['same_tokens']:.1%} (text-to-motion "
          f"{r[mq.TASKS[0]]:.1%}, motion-to-text {r[mq.TASKS[1]]:.1%}), next token "
          f"{r['same_next']:.1%}, mean logit error {r['mean_error']:.4f}")
  margins = list(answers["margins"].values())
  assert answers["tokens"] > 0 and margins == sorted(margins) and margins[0] >= 0


def test_int8_without_the_kernel_dequantizes_per_call(system, reduced, tmp_path, monkeypatch,
                                                     capsys):
  from mgpt_jax import cli
  from mgpt_jax.inference import cpu_kernels
  tokenizer_dir, lm_dir, _, _ = system
  monkeypatch.setattr(cpu_kernels, "available", lambda: False)  # as with no C++ compiler
  out = str(tmp_path / "int8_plain")
  assert cli.main(["export", "--tokenizer-dir", tokenizer_dir, "--lm-dir", lm_dir, "--out", out,
                   "--dtype", "int8"]) == 0
  assert "could not be built" in capsys.readouterr().out
  plain = mg.MotionGPT.load(out)
  assert plain.config["cpu_kernels"] is False
  text = plain.exported["generate_greedy"].mlir_module()
  assert cpu_kernels.INT8 not in text
  assert cpu_kernels.INT8 in reduced["int8"].exported["generate_greedy"].mlir_module()
  # The same weights either way; float sums in another order may flip a near-tie, not more.
  prompts = [f"Generate motion: {t}" for t in TEXTS[:4]]
  ours, theirs = plain.generate(prompts, MAX_DECODE), reduced["int8"].generate(prompts,
                                                                                MAX_DECODE)
  first = [a[0] == b[0] for a, b in zip(ours, theirs)]
  assert all(first), (ours, theirs)


def test_float32_panels_survive_export_and_load(system, tmp_path, monkeypatch):
  from mgpt_jax.inference import cpu_kernels, kernel_layers
  if not cpu_kernels.available():
    pytest.skip("no C++ compiler to build the CPU kernels")
  tokenizer_dir, lm_dir, _, model = system
  monkeypatch.setattr(kernel_layers, "MIN_PANEL_WEIGHTS", 0)  # the tiny model's matrices too
  panels = mg.MotionGPT.load(export_bundle(tokenizer_dir, lm_dir, str(tmp_path / "panels"),
                                           max_input_length=MAX_INPUT,
                                           max_decode_length=MAX_DECODE))
  mlp = panels.lm_params["decoder"]["layers_0"]["mlp"]["wo"]["kernel"]
  assert kernel_layers.is_panels(mlp) and mlp["panels"].shape[2] == cpu_kernels.PANEL
  for target in (cpu_kernels.PANELS, cpu_kernels.GREEDY_CHOICE):  # a greedy step's choice too
    assert target in panels.exported["generate_greedy"].mlir_module()
    assert target not in model.exported["generate_greedy"].mlir_module()
  assert cpu_kernels.GREEDY_CHOICE not in panels.exported["generate_sample"].mlir_module()
  # The same weights as the plain float32 bundle, summed in another order.
  prompts = [f"Generate motion: {t}" for t in TEXTS[:4]]
  ours, theirs = panels.generate(prompts, MAX_DECODE), model.generate(prompts, MAX_DECODE)
  same = np.mean([np.mean(a[:min(len(a), len(b))] == b[:min(len(a), len(b))])
                  for a, b in zip(ours, theirs)])
  assert same >= 0.9, (ours, theirs)


def test_a_bundle_without_the_cpu_kernels_loads_where_they_cannot_be_built(
    system, reduced, tmp_path, monkeypatch, capsys):
  from mgpt_jax import cli
  from mgpt_jax.inference import cpu_kernels
  tokenizer_dir, lm_dir, _, _ = system
  out = str(tmp_path / "portable")
  assert cli.main(["export", "--tokenizer-dir", tokenizer_dir, "--lm-dir", lm_dir, "--out", out,
                   "--dtype", "int8", "--no-cpu-kernels"]) == 0
  assert "CPU kernels" not in capsys.readouterr().out

  def unavailable():
    raise cpu_kernels.KernelUnavailable("CPU kernels: no C++ compiler 'g++' on PATH")
  monkeypatch.setattr(cpu_kernels, "register", unavailable)  # a machine without a compiler
  portable = mg.MotionGPT.load(out)
  assert portable.config["cpu_kernels"] is False
  for name in cpu_kernels.TARGETS:
    assert name not in portable.exported["generate_greedy"].mlir_module()
  with pytest.raises(mg.BundleError, match="no C\\+\\+ compiler.*--no-cpu-kernels"):
    mg.MotionGPT.load(reduced["int8"].bundle_dir)
  prompts = [f"Generate motion: {t}" for t in TEXTS[:2]]
  ours = portable.generate(prompts, MAX_DECODE)
  theirs = reduced["int8"].generate(prompts, MAX_DECODE)  # the same int8, through the kernel
  assert all(a[0] == b[0] for a, b in zip(ours, theirs)), (ours, theirs)


def test_thirty_seconds_by_chained_generation(system, tmp_path):
  from mgpt_jax.inference import chain
  model = system[3]
  [(features, codes)] = model.text_to_motion(["a person walks forward"], seed=3, seconds=30)
  assert features.shape == (600, 263) and len(codes) == 150  # 30 s at 20 fps
  first = model.text_to_motion(["a person walks forward"], seed=3)[0][1]
  np.testing.assert_array_equal(codes[:len(first)], first[:150])  # it continues the answer
  again, segments = chain.extend(model, [first], 150, 3)
  np.testing.assert_array_equal(again[0], codes)
  joints = features_to_joints(features)
  step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(-1)  # largest joint move per frame
  joins = chain.join_frames(segments[0], model.frames_per_token)
  assert len(joins) >= 1 and sum(segments[0]) == 150
  inside = np.delete(step, [j - 1 for j in joins])
  print(f"30 s: {len(joins)} joins; largest per-frame move at a join "
        f"{step[[j - 1 for j in joins]].max():.3f}, elsewhere {inside.max():.3f}")
  assert step[[j - 1 for j in joins]].max() <= inside.max()


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
  assert cli.main(["generate", bundle, "--text", "a person jumps", "--seconds", "12",
                   "--out", str(tmp_path / "long.npy")]) == 0
  assert np.load(tmp_path / "long.npy").shape == (240, 263)
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
  assert filled.shape == codes.shape  # the answer fills the gap, whatever its own length
  np.testing.assert_array_equal(filled[:5], codes[:5])
  np.testing.assert_array_equal(filled[15:], codes[15:])
  (whole, _), = model.inbetween([codes], seed=0, max_length=8, keep_given=False)
  assert len(whole) <= 4 * 8  # the reference's answer: the model's own codes, decoded


def test_completions_return_the_given_frames_unchanged(system):
  model = system[3]
  motion = model.codes_to_features(np.arange(20, dtype=np.int32)[None] % 7)[0] + 0.01
  (predicted, _), = model.predict([motion], seed=0, max_length=8)
  np.testing.assert_array_equal(predicted[:16], motion[:16])  # 4 codes shown, 4 frames each
  (filled, codes), = model.inbetween([motion], seed=0, max_length=8)
  assert filled.shape == motion.shape and codes.shape == (20,)
  np.testing.assert_array_equal(filled[:20], motion[:20])
  np.testing.assert_array_equal(filled[60:], motion[60:])
  assert not np.array_equal(filled[20:60], motion[20:60])  # decoded, not copied


def test_fill_gap_takes_the_answer_inside_the_gap_only():
  given = np.arange(10)
  np.testing.assert_array_equal(motion_span.fill_gap(given, np.arange(100, 112)),
                                [0, 1, 102, 103, 104, 105, 106, 7, 8, 9])
  np.testing.assert_array_equal(motion_span.fill_gap(given, [100, 101, 102, 103]),
                                [0, 1, 102, 103, 103, 103, 103, 7, 8, 9])
  np.testing.assert_array_equal(motion_span.fill_gap(given, []), [0, 1, 1, 1, 1, 1, 1, 7, 8, 9])


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
