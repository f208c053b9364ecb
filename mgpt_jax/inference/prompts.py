"""Prompt files in the official demo formats, answered in a batch by a bundle.

One prompt per line; text-to-motion lines are the prompt itself, the other tasks append
`#<motion .npy path>` and name where the motion goes with a placeholder:
    <Motion_Placeholder> or <motion>       the whole motion span
    <Motion_Placeholder_s1>                its first 20 % (prediction)
    <Motion_Placeholder_Masked>            its middle half masked (in-between)
Paths in the released files point at the authors' machines; a path that does not exist is
looked up by its file name in `motion_dir`. An answer with a motion span is a motion, any other
answer is text.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from mgpt_jax.data import formats
from mgpt_jax.lm import motion_span

WHOLE = ("<Motion_Placeholder>", "<motion>")
PREFIX = "<Motion_Placeholder_s1>"
MASKED = "<Motion_Placeholder_Masked>"


@dataclasses.dataclass(frozen=True)
class PromptLine:
  line: int  # 1-based, for messages
  template: str
  motion_path: str | None


def read_prompt_file(path: str, skipped: list[str] | None = None) -> list[PromptLine]:
  """The prompts of a file; a line naming a motion must also say where it goes.

  With `skipped` a bad line (malformed, or not UTF-8) is reported there and the others are
  read; without it the first bad line raises.
  """
  try:
    with open(path, "rb") as f:
      raw_lines = f.read().split(b"\n")
  except FileNotFoundError:
    raise formats.MotionDataError(path, "prompt file not found") from None
  prompts = []
  for number, raw in enumerate(raw_lines, 1):
    try:
      prompt = _parse_line(path, number, raw)
    except formats.MotionDataError as e:
      if skipped is None:
        raise
      skipped.append(str(e))
      continue
    if prompt is not None:
      prompts.append(prompt)
  if not prompts and not skipped:
    raise formats.MotionDataError(path, "no prompts")
  return prompts


def _parse_line(path: str, number: int, raw: bytes) -> PromptLine | None:
  try:
    text = raw.decode("utf-8").strip()
  except UnicodeDecodeError as e:
    raise formats.MotionDataError(path, f"not UTF-8 text (byte {raw[e.start]:#x})",
                                  number) from None
  if not text:
    return None
  template, _, motion = text.partition("#")
  has_slot = any(p in template for p in (*WHOLE, PREFIX, MASKED))
  if motion and not has_slot:
    raise formats.MotionDataError(path, f"names a motion but its prompt has no motion "
                                  f"placeholder ({WHOLE[0]}, {PREFIX} or {MASKED})", number)
  if has_slot and not motion:
    raise formats.MotionDataError(path, "has a motion placeholder but no '#<motion path>'",
                                  number)
  return PromptLine(number, template.strip(), motion.strip() or None)


def find_motion(path: str, motion_dir: str | None) -> str:
  if os.path.exists(path):
    return path
  if motion_dir:
    local = os.path.join(motion_dir, os.path.basename(path))
    if os.path.exists(local):
      return local
  raise FileNotFoundError(f"{path}: motion file not found" +
                          (f" (nor {os.path.basename(path)} in {motion_dir})" if motion_dir
                           else "; pass --motion-dir to look it up by file name"))


def fill(template: str, codes: np.ndarray | None) -> str:
  """The prompt text with the motion's span (or its part) in place of the placeholder."""
  if codes is None:
    return template
  text = template.replace(MASKED, motion_span.masked_string(codes))
  text = text.replace(PREFIX, motion_span.codes_to_string(
      motion_span.prediction_prompt_codes(codes)))
  for placeholder in WHOLE:
    text = text.replace(placeholder, motion_span.codes_to_string(codes))
  return text
