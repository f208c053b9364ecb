"""Metric functions of the seqio tasks: what `t5x.eval` and t5x.train's inference evaluation score.

    caption tasks (m2t)            BLEU@1, BLEU@4, ROUGE-L, CIDEr (x100; mgpt_jax.eval.metrics.text),
                                   each generated caption against every caption of its motion
    motion tasks (t2m, prediction, motion_span_valid: % of outputs with a complete motion span;
                  in-between)      token_accuracy: % of the target's codes generated at their
                                   position (a missing span matches nothing)

They score the generated token sequences only. The motion protocol of the paper (FID,
R-precision, diversity, multimodality) needs the VQ decoder and the evaluator network:
`mgpt eval` runs it on a bundle.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mgpt_jax.eval.metrics import text
from mgpt_jax.lm import motion_span

# The feature of every template task that holds all captions of the motion, one per line.
REFERENCES = "captions"


def caption_references(output: str, example=None, is_target: bool = False):
  """seqio postprocess_fn of caption tasks: a target becomes its motion's list of captions."""
  if not is_target:
    return output
  references = example[REFERENCES]
  if isinstance(references, bytes):
    references = references.decode("utf-8")
  return references.split("\n")


def caption_metrics(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict:
  scores = text.caption_metrics(predictions, targets)
  return {name: scores[name] for name in ("bleu_1", "bleu_4", "rouge_l", "cider")}


def motion_metrics(targets: Sequence[str], predictions: Sequence[str]) -> dict:
  """Span validity and position-wise code accuracy of generated motion spans."""
  valid = matched = total = 0
  for i, (target, prediction) in enumerate(zip(targets, predictions)):
    want = motion_span.span_codes(target)
    if want is None:
      raise ValueError(f"target {i} holds no motion span: {target[:200]!r}")
    got = motion_span.span_codes(prediction)
    total += len(want)
    if got is not None:
      valid += 1
      n = min(len(want), len(got))
      matched += int(np.sum(want[:n] == got[:n]))
  return {"motion_span_valid": 100.0 * valid / max(len(predictions), 1),
          "token_accuracy": 100.0 * matched / max(total, 1)}
