"""Prompt-template banks: ours (tasks/templates/*.json) and any file in the official format.

The format is the official MotionGPT one:
    {task: {subtask: {"class": str, "input": [template, ...], "output": [template, ...]}}}
with the placeholders of `PLACEHOLDERS`. Loading an official file fixes two of its quirks
(reference §11.12): `<Framelen_Placeholder>`, never filled there, is read as
`<Frame_Placeholder>`, and empty templates are dropped; both are logged.

Which bank a stage uses is set in gin, and looked up when a dataset is built:
    templates.bank_files.instruct = '/path/to/template_instructions.json'
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re

import gin
from absl import logging

CAPTION = "<Caption_Placeholder>"
MOTION = "<Motion_Placeholder>"
FRAMES = "<Frame_Placeholder>"
SECONDS = "<Second_Placeholder>"
PREDICTION_PREFIX = "<Motion_Placeholder_s1>"
PREDICTION_TARGET = "<Motion_Placeholder_s2>"
MASKED_MOTION = "<Motion_Placeholder_Masked>"
PLACEHOLDERS = (CAPTION, MOTION, FRAMES, SECONDS, PREDICTION_PREFIX, PREDICTION_TARGET,
                MASKED_MOTION)
_ALIASES = {"<Framelen_Placeholder>": FRAMES}
PLACEHOLDER_RE = re.compile(r"<[A-Za-z_0-9]*Placeholder[A-Za-z_0-9]*>")

_HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
OUR_INSTRUCT = os.path.join(_HERE, "mgpt_templates.json")
OUR_PRETRAIN = os.path.join(_HERE, "mgpt_pretrain.json")

# The 18 instruction sub-tasks of reference §5: (task name slug, bank task, bank sub-task).
INSTRUCT_SUBTASKS = (
    ("t2m_caption", "Text-to-Motion", "caption"),
    ("t2m_caption_framelen", "Text-to-Motion", "caption_framelen"),
    ("t2m_caption_seclen", "Text-to-Motion", "caption_seclen"),
    ("t2m_framelen", "Text-to-Motion", "framelen"),
    ("t2m_seclen", "Text-to-Motion", "seclen"),
    ("t2m_random", "Text-to-Motion", "random"),
    ("m2t_caption", "Motion-to-Text", "caption"),
    ("m2t_framelen", "Motion-to-Text", "framelen"),
    ("m2t_seclen", "Motion-to-Text", "seclen"),
    ("m2t_count_frame", "Motion-to-Text", "count-frame"),
    ("m2t_count_sec", "Motion-to-Text", "count-sec"),
    ("t2t_caption_to_framelen", "Text-to-Text", "caption-to-framelen"),
    ("t2t_caption_to_seclen", "Text-to-Text", "caption-to-seclen"),
    ("t2t_framelen_to_caption", "Text-to-Text", "framelen-to-caption"),
    ("t2t_seclen_to_caption", "Text-to-Text", "seclen-to-caption"),
    ("t2t_random_caption", "Text-to-Text", "random-caption"),
    ("m2m_prediction", "Motion-to-Motion", "motion_prediction"),
    ("m2m_inbetween", "Motion-to-Motion", "motion_inbetween"),
)
# Stage-2 supervised sub-tasks, found by sub-task name in the pre-training bank (the official
# file files `pred` under "Motion Prediction", ours under "Motion-to-Motion").
PRETRAIN_SUBTASKS = ("t2m", "m2t", "pred", "inbetween")
# The prompts the reference evaluates with (§4.7); captions are never quoted there by us.
EVAL_TEMPLATES = {
    "t2m": (f"Generate motion: {CAPTION}", MOTION),
    "m2t": (f"Generate text: {MOTION}", CAPTION),
    "pred": (f"Predict motion: {PREDICTION_PREFIX}", PREDICTION_TARGET),
    "inbetween": (f"Complete the masked motion: {MASKED_MOTION}", MOTION),
}


# The bank sub-tasks that the evaluation prompts ask, in both banks' naming (sub-task name, or
# (task, sub-task) where the name alone is ambiguous).
EVAL_PROMPT_SUBTASKS = {
    "t2m": "t2m", ("Text-to-Motion", "caption"): "t2m",
    "m2t": "m2t", ("Motion-to-Text", "caption"): "m2t",
    "pred": "pred", "motion_prediction": "pred",
    "inbetween": "inbetween", "motion_inbetween": "inbetween",
}


@gin.configurable
def eval_prompts_in_banks(enabled: bool = True) -> bool:
  """Whether the evaluation prompts (EVAL_TEMPLATES) join the training banks' sub-tasks that they
  ask for, so that the model is evaluated in words it was trained on. The reference trains on its
  banks alone and evaluates with prompts it never trained on (§11.11): `enabled=False`."""
  return enabled


def with_eval_prompt(entry: "SubTask") -> tuple[str, ...]:
  """The sub-task's input templates, plus the evaluation prompt of the same task if one exists
  and `eval_prompts_in_banks()`."""
  name = EVAL_PROMPT_SUBTASKS.get((entry.task, entry.name), EVAL_PROMPT_SUBTASKS.get(entry.name))
  if name is None or not eval_prompts_in_banks():
    return entry.inputs
  prompt, answer = EVAL_TEMPLATES[name]
  if answer not in entry.outputs or prompt in entry.inputs:
    return entry.inputs
  return entry.inputs + (prompt,)


class TemplateError(ValueError):
  """A template file that does not have the official format."""

  def __init__(self, path, message: str):
    super().__init__(f"{path}: {message}")
    self.path = path


@dataclasses.dataclass(frozen=True)
class SubTask:
  task: str
  name: str
  inputs: tuple[str, ...]
  outputs: tuple[str, ...]

  @property
  def placeholders(self) -> frozenset[str]:
    return frozenset(p for t in self.inputs + self.outputs for p in PLACEHOLDERS if p in t)


@dataclasses.dataclass(frozen=True)
class TemplateBank:
  path: str
  subtasks: tuple[SubTask, ...]

  def get(self, name: str, task: str | None = None) -> SubTask:
    """A sub-task by name (and task, where the name alone is ambiguous)."""
    found = [s for s in self.subtasks if s.name == name and task in (None, s.task)]
    if len(found) != 1:
      where = f"{task}/{name}" if task else name
      known = ", ".join(f"{s.task}/{s.name}" for s in self.subtasks)
      problem = "no" if not found else "more than one"
      raise TemplateError(self.path, f"{problem} sub-task {where!r}; the bank has: {known}")
    return found[0]


def _templates(path, where: str, values) -> tuple[str, ...]:
  if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
    raise TemplateError(path, f"{where}: expected a list of strings")
  kept = []
  for index, template in enumerate(values):
    for alias, placeholder in _ALIASES.items():
      if alias in template:
        logging.info("%s: %s[%d]: reading %s as %s", path, where, index, alias, placeholder)
        template = template.replace(alias, placeholder)
    unknown = sorted(set(PLACEHOLDER_RE.findall(template)) - set(PLACEHOLDERS))
    if unknown:
      raise TemplateError(path, f"{where}[{index}]: unknown placeholder(s) {unknown}; "
                          f"expected some of {list(PLACEHOLDERS)}")
    if template.strip():
      kept.append(template)
    else:
      logging.warning("%s: %s[%d]: dropped an empty template", path, where, index)
  if not kept:
    raise TemplateError(path, f"{where}: no non-empty template")
  return tuple(kept)


def parse_bank(data, path="<json>") -> TemplateBank:
  if not isinstance(data, dict) or not data:
    raise TemplateError(path, "expected a JSON object {task: {subtask: {input, output}}}")
  subtasks = []
  for task, entries in data.items():
    if not isinstance(entries, dict):
      raise TemplateError(path, f"task {task!r}: expected an object of sub-tasks")
    for name, entry in entries.items():
      where = f"{task}/{name}"
      if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
        raise TemplateError(path, f"{where}: expected an object with 'input' and 'output' lists")
      subtasks.append(SubTask(task, name, _templates(path, f"{where}/input", entry["input"]),
                              _templates(path, f"{where}/output", entry["output"])))
  return TemplateBank(os.fspath(path), tuple(subtasks))


@functools.lru_cache(maxsize=None)
def load_bank(path: str) -> TemplateBank:
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except FileNotFoundError:
    raise TemplateError(path, "template file not found") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise TemplateError(path, f"not valid JSON: {e}") from None
  return parse_bank(data, path)


@gin.configurable
def bank_files(instruct: str = OUR_INSTRUCT, pretrain: str = OUR_PRETRAIN) -> dict[str, str]:
  return {"instruct": os.fspath(instruct), "pretrain": os.fspath(pretrain)}


def bank(kind: str) -> TemplateBank:
  """The bank gin names for 'instruct' or 'pretrain'."""
  files = bank_files()
  if kind not in files:
    raise ValueError(f"template bank kind {kind!r}: expected one of {sorted(files)}")
  return load_bank(files[kind])
