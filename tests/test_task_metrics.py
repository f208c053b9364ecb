"""The seqio tasks' metric functions (tasks/metrics.py), as seqio calls them."""
import pytest
import seqio

import tasks  # noqa: F401  (registration)
from mgpt_jax.eval.metrics import text
from mgpt_jax.lm.motion_span import codes_to_string, span_codes
from tasks import metrics


def test_span_codes_is_none_where_there_is_no_complete_span():
  assert list(span_codes("x <motion_id_512><motion_id_3><motion_id_4><motion_id_513> y")) == [3, 4]
  for text_ in ("<motion_id_3>", "<motion_id_512><motion_id_3>", "<motion_id_512><motion_id_513>",
                "a caption"):
    assert span_codes(text_) is None, text_


def test_motion_metrics_count_valid_spans_and_codes_in_place():
  targets = [codes_to_string([1, 2, 3, 4]), codes_to_string([5, 6])]
  predictions = [codes_to_string([1, 9, 3]), "no motion here"]
  scores = metrics.motion_metrics(targets, predictions)
  assert scores == {"motion_span_valid": 50.0, "token_accuracy": pytest.approx(100 * 2 / 6)}
  assert metrics.motion_metrics(targets, targets)["token_accuracy"] == 100.0
  with pytest.raises(ValueError, match="target 0 holds no motion span"):
    metrics.motion_metrics(["a caption"], ["a caption"])


def test_caption_targets_are_all_captions_of_the_motion():
  example = {metrics.REFERENCES: b"a man walks\na person walks forward"}
  assert metrics.caption_references("a man walks", example, is_target=True) == [
      "a man walks", "a person walks forward"]
  assert metrics.caption_references("he walks", example, is_target=False) == "he walks"
  refs = [["a man walks", "a person walks forward"], ["someone jumps"]]
  hyps = ["a man walks", "a person jumps"]
  scores = metrics.caption_metrics(refs, hyps)
  expected = text.caption_metrics(hyps, refs)
  assert scores == {k: expected[k] for k in ("bleu_1", "bleu_4", "rouge_l", "cider")}


def test_tasks_carry_their_metrics():
  def fns(name):
    return [f.__name__ for f in seqio.get_mixture_or_task(name).metric_fns]
  for dataset in ("humanml3d", "kit_ml", "synthetic"):
    eval_mixture = seqio.get_mixture_or_task(f"mgpt_{dataset}_eval")
    assert sorted(t.name for t in eval_mixture.tasks) == sorted(
        f"mgpt_{dataset}_eval_{n}" for n in ("t2m", "m2t", "pred", "inbetween"))
    for name in ("eval_t2m", "eval_pred", "eval_inbetween", "t2m", "instruct_t2m_caption",
                 "instruct_m2m_inbetween"):
      assert fns(f"mgpt_{dataset}_{name}") == ["motion_metrics"], name
    for name in ("eval_m2t", "m2t", "instruct_m2t_caption"):
      assert fns(f"mgpt_{dataset}_{name}") == ["caption_metrics"], name
      task = seqio.get_mixture_or_task(f"mgpt_{dataset}_{name}")
      assert task.postprocessor is metrics.caption_references
    for name in ("text_span", "motion_span", "instruct_t2t_random_caption",
                 "instruct_m2t_count_frame"):
      assert fns(f"mgpt_{dataset}_{name}") == [], name
