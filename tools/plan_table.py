"""The README's fit table: each stage x model size x hardware file through the planner.

    python tools/plan_table.py [--readme README.md] [--json_dir DIR] [--mfu 0.4]

Every row is one `python -m mgpt_jax.training.planner` process (a fresh jax with the mesh's
device count). Sizes with many layers are compiled at 2 and 4 encoder+decoder layers and
extrapolated linearly in depth (the planner's --extrapolate_layers; state bytes stay exact):
a full T5-XL compile for 16 simulated devices takes minutes of one CPU core per row.
With --readme the table replaces the text between the PLAN_TABLE markers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mgpt_jax import atomic_io  # pylint: disable=g-import-not-at-top,wrong-import-position

BEGIN, END = "<!-- PLAN_TABLE -->", "<!-- /PLAN_TABLE -->"
STAGES = {"tokenizer": "gin/tokenizer.gin", "pretrain": "gin/runner/pretrain.gin",
          "instruct": "gin/runner/instruct.gin"}
LM_HARDWARE = ("lm_gpu_8x", "lm_gpu_8x_h100", "lm_tpu_v4_32", "lm_tpu_v5p_64")
TOKENIZER_HARDWARE = ("gpu_8x", "tpu_v4_32")
SIZES = ("small", "base", "large", "xl")
EXTRAPOLATE = {"base": "2,4", "large": "2,4", "xl": "2,4"}
# Offline there is no T5 SentencePiece file: the rows it would give (32615 -> 32640).
COMMON = ["--gin.MODEL_DIR='/nonexistent'", "--gin.lm_config.get_config.vocab_size=32640",
          "--gin.INITIAL_CHECKPOINT_PATH='/nonexistent'"]


def rows():
  for hardware in TOKENIZER_HARDWARE:
    yield "tokenizer", "vq", hardware, [f"--gin_file={STAGES['tokenizer']}",
                                        f"--gin_file=gin/hardware/{hardware}.gin"]
  for stage in ("pretrain", "instruct"):
    for size in SIZES:
      for hardware in LM_HARDWARE:
        flags = [f"--gin_file={STAGES[stage]}", f"--gin_file=gin/models/t5_{size}.gin",
                 f"--gin_file=gin/hardware/{hardware}.gin", *COMMON[1:]]
        if size in EXTRAPOLATE:
          flags.append(f"--extrapolate_layers={EXTRAPOLATE[size]}")
        yield stage, size, hardware, flags


def run_row(flags: list[str], out: str, mfu: float) -> dict | str:
  if os.path.exists(out):
    with open(out, encoding="utf-8") as f:
      return json.load(f)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run([sys.executable, "-m", "mgpt_jax.training.planner", *flags,
                         COMMON[0], f"--mfu={mfu}", f"--json={out}"], cwd=REPO, env=env,
                        capture_output=True, text=True, check=False)
  if proc.returncode not in (0, 2) or not os.path.exists(out):
    return (proc.stderr.strip().splitlines() or ["no output"])[-1]
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def gib(n: float) -> str:
  return f"{n / 2**30:.1f}"


def table(results) -> str:
  lines = ["| stage | model | hardware file | accelerator | mesh (data x model), rules, remat, "
           "micro-batches | parameters | state GiB/device | activations GiB/device | total "
           "GiB/device | fits (90 % of HBM) | step (MFU 40 %) | throughput |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for (stage, size, hardware), r in results:
    if isinstance(r, str):
      lines.append(f"| {stage} | {size} | {hardware} | | error: {r} | | | | | | | |")
      continue
    mesh = " x ".join(str(n) for n in r["mesh"].values())
    settings = f"{mesh}, {r['rules']}, {r['remat_policy'] or '-'}, {r['microbatches']}"
    state = r["param_bytes"] + r["optimizer_bytes"] + r["other_state_bytes"]
    note = " (depth-extrapolated)" if r["extrapolated_from"] else ""
    lines.append(
        f"| {stage} | {size} | {hardware} | {r['accelerator']} | {settings} | "
        f"{r['param_count'] / 1e6:,.0f}M | {gib(state)} | {gib(r['temp_bytes'])}{note} | "
        f"{gib(r['total_bytes'])} | {'yes' if r['fits'] else '**no**'} | "
        f"{r['step_seconds'] * 1e3:,.0f} ms | {r['positions_per_second'] / 1e3:,.0f}K "
        f"{r['position_name']}/s |")
  return "\n".join(lines)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--readme", help="replace the table between the PLAN_TABLE markers")
  parser.add_argument("--json_dir", default="/tmp/mgpt_plan_table",
                      help="one planner JSON per row; rows already there are reused")
  parser.add_argument("--mfu", type=float, default=0.4)
  parser.add_argument("--only", default="", help="comma-separated substrings a row must match")
  args = parser.parse_args()
  os.makedirs(args.json_dir, exist_ok=True)
  results = []
  for stage, size, hardware, flags in rows():
    key = f"{stage}_{size}_{hardware}"
    if args.only and not any(part in key for part in args.only.split(",")):
      continue
    if not os.path.exists(os.path.join(REPO, "gin", "hardware", f"{hardware}.gin")):
      continue
    start = time.time()
    result = run_row(flags, os.path.join(args.json_dir, key + ".json"), args.mfu)
    print(f"{key}: {'ok' if isinstance(result, dict) else result} ({time.time() - start:.0f} s)",
          file=sys.stderr, flush=True)
    results.append(((stage, size, hardware), result))
  text = table(results)
  print(text)
  if args.readme:
    with open(args.readme, encoding="utf-8") as f:
      readme = f.read()
    if BEGIN not in readme or END not in readme:
      print(f"error: {args.readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
      return 1
    head, rest = readme.split(BEGIN, 1)
    atomic_io.write_text(args.readme, head + BEGIN + "\n" + text + "\n" + END
                         + rest.split(END, 1)[1])
  return 0


if __name__ == "__main__":
  sys.exit(main())
