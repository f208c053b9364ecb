"""Registers one dataset's seqio tasks and mixtures. Names, for dataset D:

    mgpt_D_t2m, mgpt_D_m2t, mgpt_D_pred, mgpt_D_inbetween   stage-2 supervised pairs ('pretrain' bank)
    mgpt_D_text_span, mgpt_D_motion_span                     stage-2 span corruption
    mgpt_D_instruct_<subtask>                                the 18 stage-3 sub-tasks ('instruct' bank)
    mgpt_D_eval_{t2m,m2t,pred,inbetween}                     the reference's evaluation prompts
    mgpt_D_pretrain, mgpt_D_instruct                         the stage mixtures
    mgpt_D_eval                                              the four evaluation tasks

Caption and motion tasks carry metric functions (tasks/metrics.py) for t5x.eval and t5x.train's
inference evaluation; the span-corruption and text-to-text tasks have none.

Every task reads the train/validation/test splits; mixture rates are gin-configurable
(`pretrain_rates`, `instruct_rates`) and read when a mixture is sampled.
"""
from __future__ import annotations

import functools

import gin
import seqio

from tasks import metrics, preprocessors, span_corruption, templates
from tasks.sources import MotionTokenSource
from tasks.vocabulary import motion_vocabulary

# Registered dataset name -> the skeleton its features use.
DATASETS = {"humanml3d": "humanml3d", "kit_ml": "kit", "synthetic": "humanml3d"}
SUPERVISED = templates.PRETRAIN_SUBTASKS
SPAN_TASKS = ("text_span", "motion_span")
# The source shuffles every entry of a split each epoch; seqio's buffer after preprocessing
# only has to mix neighbours, and a small one starts an 18-task mixture quickly.
SHUFFLE_BUFFER = 128


def output_features() -> dict[str, seqio.Feature]:
  vocab = motion_vocabulary()
  return {"inputs": seqio.Feature(vocab, add_eos=True),
          "targets": seqio.Feature(vocab, add_eos=True)}


def task_name(dataset: str, name: str) -> str:
  return f"mgpt_{dataset}_{name}"


def _suffix(task: seqio.Task) -> str:
  # mgpt_<dataset>_<suffix>; dataset names contain underscores, so strip the known prefix.
  for dataset in DATASETS:
    prefix = f"mgpt_{dataset}_"
    if task.name.startswith(prefix):
      return task.name[len(prefix):]
  raise ValueError(f"task {task.name!r} is not one of mgpt_jax's")


@gin.configurable
def pretrain_rates(task: seqio.Task, supervised: float = 0.6, text_span: float = 0.2,
                   motion_span: float = 0.2, inbetween: bool = True) -> float:
  """Stage-2 sampling rates. Default: the mix the reference left commented out (§4.6): text and
  motion span corruption 1/5 each, the supervised pairs 3/5 shared equally."""
  suffix = _suffix(task)
  if suffix in SPAN_TASKS:
    return {"text_span": text_span, "motion_span": motion_span}[suffix]
  pairs = SUPERVISED if inbetween else tuple(s for s in SUPERVISED if s != "inbetween")
  return supervised / len(pairs) if suffix in pairs else 0.0


@gin.configurable
def instruct_rates(task: seqio.Task, rates: dict | None = None) -> float:
  """Stage-3 rates: equal for the 18 sub-tasks (as the reference's loader), or `rates` by name."""
  subtask = _suffix(task)[len("instruct_"):]
  return 1.0 if rates is None else float(rates.get(subtask, 0.0))


# Template tasks scored by the answer they ask for (names without the eval_/instruct_ prefix).
CAPTION_TASKS = ("m2t", "m2t_caption", "m2t_framelen", "m2t_seclen")
MOTION_TASKS = ("t2m", "pred", "inbetween", "m2m_prediction", "m2m_inbetween")


def _scoring(name: str) -> dict:
  """The metric functions and postprocessor of a template task."""
  kind = name.removeprefix("eval_").removeprefix("instruct_")
  if kind in CAPTION_TASKS:
    return {"metric_fns": [metrics.caption_metrics],
            "postprocess_fn": metrics.caption_references}
  if kind in MOTION_TASKS or kind.startswith("t2m_"):
    return {"metric_fns": [metrics.motion_metrics]}
  return {}


def _template_task(dataset: str, skeleton: str, name: str, kind: str, subtask: str,
                   bank_task: str | None = None, quote_probability: float = 0.5) -> None:
  seqio.TaskRegistry.add(
      task_name(dataset, name),
      source=MotionTokenSource(dataset, skeleton),
      # Templates and captions are drawn after the cache point: a new draw every epoch.
      preprocessors=[
          seqio.CacheDatasetPlaceholder(),
          functools.partial(preprocessors.fill_templates, kind=kind, subtask=subtask,
                            task=bank_task, quote_probability=quote_probability),
          seqio.preprocessors.tokenize,
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=output_features(), shuffle_buffer_size=SHUFFLE_BUFFER, **_scoring(name))


def _span_task(dataset: str, skeleton: str, name: str, make_ids) -> None:
  seqio.TaskRegistry.add(
      task_name(dataset, name),
      source=MotionTokenSource(dataset, skeleton),
      preprocessors=[seqio.CacheDatasetPlaceholder(), *make_ids, span_corruption.span_corruption,
                     seqio.preprocessors.append_eos_after_trim],
      output_features=output_features(), shuffle_buffer_size=SHUFFLE_BUFFER)


def register_dataset(dataset: str, skeleton: str) -> None:
  """All tasks and mixtures of one dataset (idempotent: a second import re-registers nothing)."""
  if task_name(dataset, "instruct") in seqio.MixtureRegistry.names():
    return
  for subtask in SUPERVISED:
    _template_task(dataset, skeleton, subtask, "pretrain", subtask)
  _span_task(dataset, skeleton, "text_span",
             [preprocessors.pick_caption, preprocessors.tokenize_text])
  _span_task(dataset, skeleton, "motion_span", [preprocessors.motion_ids])
  for slug, bank_task, subtask in templates.INSTRUCT_SUBTASKS:
    _template_task(dataset, skeleton, f"instruct_{slug}", "instruct", subtask, bank_task)
  for name in templates.EVAL_TEMPLATES:
    _template_task(dataset, skeleton, f"eval_{name}", "eval", name, quote_probability=0.0)

  pretrain = [task_name(dataset, n) for n in (*SUPERVISED, *SPAN_TASKS)]
  seqio.MixtureRegistry.add(task_name(dataset, "pretrain"),
                            [(t, pretrain_rates) for t in pretrain])
  instruct = [task_name(dataset, f"instruct_{slug}") for slug, _, _ in templates.INSTRUCT_SUBTASKS]
  seqio.MixtureRegistry.add(task_name(dataset, "instruct"),
                            [(t, instruct_rates) for t in instruct])
  seqio.MixtureRegistry.add(task_name(dataset, "eval"),
                            [task_name(dataset, f"eval_{n}") for n in templates.EVAL_TEMPLATES],
                            default_rate=1.0)

