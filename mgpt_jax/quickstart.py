"""`mgpt quickstart`: the whole pipeline on the embedded synthetic default.

Each step leaves its output under OUT and is skipped when that output is
already complete, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

from mgpt_jax.data import validate


def _step(name: str):
  print(f"\n== {name}", flush=True)


def run(out: str, num_motions: int = 400, seed: int = 0) -> int:
  start = time.time()
  data_dir = os.path.join(out, "data")
  tfds_dir = os.path.join(out, "tfds")

  _step("1/3 synthetic dataset (HumanML3D layout)")
  if os.path.exists(os.path.join(data_dir, "all.txt")):
    print(f"found {data_dir}, keeping it")
  else:
    from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=g-import-not-at-top
    report = write_dataset(data_dir, num_motions, seed)
    print(f"{report.num_motions} motions, {report.num_frames} frames in {report.seconds:.1f} s")

  _step("2/3 validate")
  report = validate.validate_dataset(
      data_dir, "humanml3d", progress=lambda ids: tqdm(ids, desc="validate", file=sys.stderr))
  print(validate.format_report(report, report.errors))
  if not report.ok:
    return 1

  _step("3/3 tensorflow-datasets build")
  from mgpt_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  builder = tfds_builder.build(data_dir, dataset="synthetic", tfds_data_dir=tfds_dir)
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} examples")

  print(f"\nquickstart finished in {time.time() - start:.0f} s. Outputs:")
  print(f"  dataset     {os.path.abspath(data_dir)}")
  print(f"  tfds        {os.path.abspath(builder.data_dir)}")
  print("The tokenizer, language-model stages, export and evaluation join this job as they land.")
  return 0
