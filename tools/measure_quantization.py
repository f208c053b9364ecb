"""What bfloat16 and int8 bundles cost in quality: greedy tokens and logits against float32.

    python tools/measure_quantization.py --tokenizer-dir RUN/tokenizer --lm-dir RUN/instruct \
        --data RUN/data [--num-prompts 128]

Exports the LM as float32, bfloat16 and int8 bundles, answers the test split's prompts greedily
with each (text-to-motion from its captions, motion-to-text from its motion tokens) and prints,
per dtype: the fraction of answer tokens identical to float32's at the same position (over
float32's answer lengths; one early difference makes the rest of an answer differ), over all
answers and per task; the fraction of whole answers identical; the fraction of next tokens
identical when both are given float32's answer so far (teacher-forced argmax: no such
cascade); and the teacher-forced logit error on float32's answers (max and mean |difference|,
and the mean relative to the float32 logits' standard deviation), computed by the Flax model on
the parameters the bundle holds, in the bundle's compute dtype. Then how far float32's chosen
tokens lead the runner-up: the margins a dtype's error can flip.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax.data import formats
from mgpt_jax.inference import kernel_layers, quantize
from mgpt_jax.inference.bundle import export_bundle
from mgpt_jax.inference.motiongpt import M2T_PROMPT, T2M_PROMPT, MotionGPT, read_tree
from mgpt_jax.lm import motion_span
from mgpt_jax.lm.config import T5Config
from mgpt_jax.lm.t5 import Transformer


TASKS = ("text-to-motion", "motion-to-text")


def split_prompts(data_dir: str, count: int) -> tuple[list[str], list[str]]:
  """(prompts, the task of each): text-to-motion from the first count // 2 test captions, then
  motion-to-text from the same motions' tokens (where TOKENS/ has them)."""
  data = formats.MotionDataset(data_dir)
  ids = data.split_ids("test")[:count // 2]
  prompts = [T2M_PROMPT.format(data.captions(i)[0].text) for i in ids]
  for i in ids:
    path = os.path.join(data_dir, "TOKENS", i + ".npy")
    if os.path.exists(path):
      codes = np.load(path, allow_pickle=False)[0][:64]
      prompts.append(M2T_PROMPT.format(motion_span.codes_to_string(codes)))
  return prompts, [TASKS[0]] * len(ids) + [TASKS[1]] * (len(prompts) - len(ids))


def teacher_forced_logits(system: MotionGPT, tokens: np.ndarray, answers: np.ndarray):
  """(B, L, vocab) float32 logits of `answers` (B, L; 0-padded) under the bundle's parameters."""
  config = T5Config.from_dict(system.config["lm"])
  params = jax.tree.map(jnp.asarray, read_tree(os.path.join(system.bundle_dir, "lm_params.npz")))
  # What the bundle serves: its large matrices through the CPU kernels (int8 as it is, float32
  # as panels), or int8 dequantized per call.
  kernel = system.config.get("cpu_kernels", system.config.get("int8_kernel", False))
  if system.config["dtype"] == "int8" and not kernel:
    params = quantize.dequantize_tree(params, config.dtype)
  inputs = np.pad(answers[:, :-1], ((0, 0), (1, 0)))  # shifted right: PAD is the start token
  with kernel_layers.kernel_layers() if kernel else contextlib.nullcontext():
    logits = Transformer(config).apply({"params": params}, tokens, inputs, answers,
                                       enable_dropout=False)
  return np.asarray(logits, np.float32)


def measure(systems: dict, prompts: list[str], tasks: list[str], max_length: int
            ) -> tuple[list[dict], dict]:
  """(a row per dtype of `systems` (float32 first: the reference), float32's answers: its token
  count and the percentiles of its chosen tokens' lead over the runner-up)."""
  reference = systems["float32"]
  tokens = reference.prompt_tokens(prompts)
  ids, lengths = reference.generate_ids(tokens, max_length)
  answers = np.where(np.arange(ids.shape[1]) < lengths[:, None], ids, 0)
  base_logits = teacher_forced_logits(reference, tokens, answers)
  valid = answers > 0
  scale = float(base_logits[valid].std())
  vocab = reference.config["vocab_size"]  # rows past it pad the table and are never chosen
  rows = []
  for dtype, system in systems.items():  # float32's own row: do its answers and logits repeat?
    ours, n = system.generate_ids(tokens, max_length)
    same = (ours == ids) & valid
    logits = teacher_forced_logits(system, tokens, answers)
    error = np.abs(logits - base_logits)[valid]
    forced = (logits[..., :vocab].argmax(-1) == base_logits[..., :vocab].argmax(-1))[valid]
    row = {"dtype": dtype,
           "bytes": os.path.getsize(os.path.join(system.bundle_dir, "lm_params.npz")),
           "same_tokens": same.sum() / valid.sum(),
           "same_answers": np.mean([np.array_equal(ours[i, :n[i]], ids[i, :lengths[i]])
                                    for i in range(len(ids))]),
           "max_error": error.max(), "same_next": forced.mean(), "mean_error": error.mean(),
           "relative_error": error.mean() / scale}
    for task in TASKS:  # is one task's answers nearer ties than the other's?
      of_task = np.asarray(tasks) == task
      row[task] = same[of_task].sum() / max(valid[of_task].sum(), 1)
    rows.append(row)
  # A greedy choice whose lead over the runner-up is below a dtype's logit error can flip,
  # and one flip changes the rest of a free-running answer.
  top2 = np.sort(base_logits[..., :vocab], axis=-1)[..., -2:][valid]
  cuts = np.percentile(top2[:, 1] - top2[:, 0], [0.5, 1, 2, 5])
  return rows, {"tokens": int(valid.sum()), "margins": dict(zip((0.5, 1, 2, 5), cuts))}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tokenizer-dir", required=True)
  parser.add_argument("--lm-dir", required=True)
  parser.add_argument("--data", required=True)
  parser.add_argument("--num-prompts", type=int, default=128)
  parser.add_argument("--max-length", type=int, default=64)
  args = parser.parse_args()
  prompts, tasks = split_prompts(args.data, args.num_prompts)
  with tempfile.TemporaryDirectory() as root:
    systems = {dtype: MotionGPT.load(export_bundle(
        args.tokenizer_dir, args.lm_dir, os.path.join(root, dtype), dtype,
        max_decode_length=args.max_length)) for dtype in ("float32", "bfloat16", "int8")}
    rows, answers = measure(systems, prompts, tasks, args.max_length)
  print(f"{len(prompts)} test prompts ({tasks.count(TASKS[0])} text-to-motion, the rest "
        f"motion-to-text), greedy, {answers['tokens']} float32 answer tokens\n")
  print("| dtype | LM bytes | same tokens | of text-to-motion | of motion-to-text | same answers "
        "| max abs logit error | same next token (teacher-forced) | mean abs | mean / logit std |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['dtype']} | {r['bytes'] / 1e6:.1f} MB | {r['same_tokens']:.1%} | "
          f"{r[TASKS[0]]:.1%} | {r[TASKS[1]]:.1%} | {r['same_answers']:.1%} | "
          f"{r['max_error']:.4f} | {r['same_next']:.1%} | {r['mean_error']:.5f} | "
          f"{r['relative_error']:.5f} |")
  print("\nfloat32's lead of its chosen token over the runner-up (teacher-forced logits): "
        + ", ".join(f"{p}% of choices under {c:.4f}" for p, c in answers["margins"].items()))


if __name__ == "__main__":
  main()
