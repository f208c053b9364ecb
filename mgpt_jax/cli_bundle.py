"""The `mgpt` commands that use an inference bundle: export, generate, caption, predict,
inbetween, batch and demo. Thin, like the rest of the CLI (`mgpt_jax/cli.py` holds the parser)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from tqdm import tqdm

from mgpt_jax import errors
from mgpt_jax.data.formats import MotionDataError


def cmd_demo(args) -> int:
  import importlib.util  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("gradio") is None:
    print("error: the demo needs Gradio: pip install 'mgpt_jax[demo]'", file=sys.stderr)
    return 1
  from mgpt_jax.demo.app import serve  # pylint: disable=g-import-not-at-top
  serve(args.bundle, args.host, args.port)
  return 0


def cmd_export(args) -> int:
  from mgpt_jax.inference.bundle import export_bundle  # pylint: disable=g-import-not-at-top
  from mgpt_jax.inference.motiongpt import CONFIG  # pylint: disable=g-import-not-at-top
  out = export_bundle(args.tokenizer_dir, args.lm_dir, args.out, dtype=args.dtype,
                      vocabulary_dir=args.vocabulary_dir, overwrite=args.overwrite,
                      use_kernels=args.cpu_kernels)
  print(f"wrote the inference bundle {out}")
  with open(os.path.join(out, CONFIG), encoding="utf-8") as f:
    kernels = json.load(f)["cpu_kernels"]
  if kernels:
    print("its LM computes its large matrices with the CPU kernels"
          + (" from the int8 weights" if args.dtype == "int8" else ""))
  elif args.dtype == "int8" and args.cpu_kernels:
    print("note: the CPU kernels could not be built here (a C++ compiler: g++ or $CXX), so the "
          "bundle dequantizes its weights once per call")
  return 0


def _save_outputs(features, out, render, bvh, fps, as_joints=False, title=None) -> None:
  from mgpt_jax import atomic_io  # pylint: disable=g-import-not-at-top
  from mgpt_jax.data.features import features_to_joints  # pylint: disable=g-import-not-at-top
  joints = features_to_joints(features) if (render or bvh or as_joints) else None
  if out:
    array = joints.astype(np.float32) if as_joints else features
    atomic_io.save_npy(out, array)
    print(f"wrote {'joints' if as_joints else 'features'} {array.shape} to {out}")
  if render or bvh:
    if render:
      from mgpt_jax.inference.render import render_motion  # pylint: disable=g-import-not-at-top
      render_motion(joints, render, fps=fps, title=title)
      print(f"wrote {render}")
    if bvh:
      from mgpt_jax.inference.bvh import write_bvh  # pylint: disable=g-import-not-at-top
      write_bvh(bvh, joints, fps=fps)
      print(f"wrote {bvh}")


def _numbered(path: str | None, k: int, count: int) -> str | None:
  if path is None or count == 1:
    return path
  stem, ext = path.rsplit(".", 1) if "." in path else (path, "")
  return f"{stem}_{k}.{ext}" if ext else f"{stem}_{k}"


def _check_motion_outputs(args) -> None:
  """Output flags that cannot work are refused before the bundle is loaded."""
  if args.render:
    from mgpt_jax.inference.render import check_output  # pylint: disable=g-import-not-at-top
    check_output(args.render)
  if args.bvh and not args.bvh.lower().endswith(".bvh"):
    raise errors.UserError(f"--bvh {args.bvh}: expected a path ending in .bvh")
  for flag, path in (("--out", args.out), ("--render", args.render), ("--bvh", args.bvh)):
    if path and os.path.isdir(path):
      raise errors.UserError(f"{flag} {path}: is a directory; expected a file path")


def cmd_generate(args) -> int:
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  if args.num_samples < 1:
    raise errors.UserError(f"--num-samples {args.num_samples}: expected an integer >= 1")
  if not args.text.strip():
    raise errors.UserError("--text is empty: expected a description of the motion")
  _check_motion_outputs(args)
  system = MotionGPT.load(args.bundle)
  if args.seconds is not None and args.seconds <= 0:
    raise ValueError(f"--seconds {args.seconds}: expected > 0")
  results = system.text_to_motion([args.text] * args.num_samples, seed=args.seed,
                                  seconds=args.seconds)
  fps = float(system.config["fps"])
  for k, (features, codes) in enumerate(results):
    print(f"sample {k}: {len(codes)} codes, {len(features)} frames ({len(features) / fps:.1f} s)")
    _save_outputs(features, _numbered(args.out, k, len(results)),
                  _numbered(args.render, k, len(results)), _numbered(args.bvh, k, len(results)),
                  fps, args.as_joints, title=args.text)
  return 0


def _read_motion(path: str, system):
  """Features (T, D) in dataset units, from a features, joints or BVH file."""
  from mgpt_jax.data.convert import load_motion_features  # pylint: disable=g-import-not-at-top
  return load_motion_features(path, system.config["dataset"])


def cmd_caption(args) -> int:
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  system = MotionGPT.load(args.bundle)
  print(system.motion_to_text([_read_motion(args.motion, system)])[0])
  return 0


def cmd_complete(args) -> int:
  """`predict` and `inbetween`: a motion in, the completed motion out."""
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  _check_motion_outputs(args)
  system = MotionGPT.load(args.bundle)
  task = system.predict if args.command == "predict" else system.inbetween
  features, codes = task([_read_motion(args.motion, system)], seed=args.seed)[0]
  print(f"{len(codes)} codes, {len(features)} frames")
  _save_outputs(features, args.out, args.render, args.bvh, float(system.config["fps"]),
                args.as_joints, title=f"{args.command}: {os.path.basename(args.motion)}")
  return 0


BATCH_ANSWERS = "answers.jsonl"


def cmd_batch(args) -> int:
  """Every line of a demo prompt file: motions to OUT_DIR/<line>.npy, texts to answers.jsonl."""
  import json  # pylint: disable=g-import-not-at-top
  from mgpt_jax import atomic_io  # pylint: disable=g-import-not-at-top
  from mgpt_jax.inference import prompts  # pylint: disable=g-import-not-at-top
  from mgpt_jax.inference.motiongpt import MotionGPT  # pylint: disable=g-import-not-at-top
  atomic_io.check_output_dir(args.out_dir, args.overwrite, markers=(BATCH_ANSWERS,))
  texts, skipped = [], []
  lines = prompts.read_prompt_file(args.prompts, skipped)
  total = len(lines) + len(skipped)  # unreadable lines count as prompts not answered
  system = MotionGPT.load(args.bundle)
  for item in lines:
    try:
      codes = None
      if item.motion_path:
        motion = _read_motion(prompts.find_motion(item.motion_path, args.motion_dir), system)
        codes = system.motion_codes(motion, item.line)
      texts.append((item, prompts.fill(item.template, codes)))
    except (MotionDataError, FileNotFoundError, ValueError) as e:
      skipped.append(f"line {item.line}: {e}")
  accepted = []
  for item, text in texts:
    try:
      system.prompt_tokens([text])
      accepted.append((item, text))
    except ValueError as e:  # e.g. longer than the bundle's encoder takes
      skipped.append(f"line {item.line}: {e}")
  # One batch for the whole file (the bundle sends MAX_BATCH prompts per device call); each
  # line samples with the key of (seed, line), so an answer does not depend on its neighbours.
  answers = system.generate([text for _, text in accepted],
                            int(system.config["max_decode_length"]), args.seed,
                            rows=[item.line for item, _ in accepted]) if accepted else []
  motions = iter(system.answers_to_motions([ids for ids in answers if system.vocab.som_id in ids]))
  if answers:
    os.makedirs(args.out_dir, exist_ok=True)
  records = []
  for (item, text), ids in tqdm(list(zip(accepted, answers)), desc="answers", file=sys.stderr):
    record = {"line": item.line, "prompt": text}
    if system.vocab.som_id in ids:  # a motion answer
      features, _ = next(motions)
      record["motion"] = os.path.join(args.out_dir, f"{item.line:04d}.npy")
      atomic_io.save_npy(record["motion"], features)
      if args.render:
        from mgpt_jax.data.features import features_to_joints  # pylint: disable=g-import-not-at-top
        from mgpt_jax.inference.render import render_motion  # pylint: disable=g-import-not-at-top
        record["render"] = record["motion"][:-4] + ".gif"
        render_motion(features_to_joints(features), record["render"],
                      fps=float(system.config["fps"]), title=item.template)
    else:
      record["text"] = system.vocab.decode(ids).strip()
    records.append(record)
  if records:  # nothing answered: nothing written, an earlier answers file stays as it was
    atomic_io.write_text(os.path.join(args.out_dir, BATCH_ANSWERS),
                         "".join(json.dumps(r) + "\n" for r in records))
  print(f"answered {len(records)} of {total} prompts into {args.out_dir}")
  for reason in skipped:
    print(f"skipped {reason}", file=sys.stderr)
  return 0 if records else 1
