"""Turning source examples into prompt/answer text (tf.data ops, seeded by seqio).

Placeholder values (reference §4.4, with its frame/token mix-up fixed, §11.2):
    <Caption_Placeholder>         one of the entry's captions, drawn at random; in the prompt,
                                  wrapped in double quotes with probability `quote_probability`
                                  (reference: 0.5, answers too; here answers are never quoted)
    <Motion_Placeholder>          the whole motion span  <motion_id_{som}> codes <motion_id_{eom}>
    <Frame_Placeholder>           the frame count (always frames, in training too)
    <Second_Placeholder>          frames / fps to one decimal (the reference floors to whole
                                  seconds at 20 fps for every dataset)
    <Motion_Placeholder_s1/_s2>   the first floor(0.2 L) codes / the rest (prediction)
    <Motion_Placeholder_Masked>   the first floor(0.25 L) and the codes from floor(0.75 L) on,
                                  the middle replaced by <motion_id_{mask}> (in-between)
The split points equal the reference's int(L * r + 1) - 1 with frames passed as its length.
"""
from __future__ import annotations

import seqio
import tensorflow as tf

from mgpt_jax.lm import motion_span
from tasks import templates as tpl
from tasks import vocabulary
from tasks.metrics import REFERENCES

PREDICTION_RATIO = motion_span.PREDICTION_RATIO
INBETWEEN_RATIO = motion_span.INBETWEEN_RATIO


def motion_string(codes: tf.Tensor, num_codes: int) -> tf.Tensor:
  """int codes [L] -> "<motion_id_{som}><motion_id_c0>...<motion_id_{eom}>"."""
  inner = tf.strings.reduce_join("<motion_id_" + tf.strings.as_string(codes) + ">")
  return tf.strings.join([f"<motion_id_{num_codes}>", inner, f"<motion_id_{num_codes + 1}>"])


def _split_point(length: tf.Tensor, ratio: float) -> tf.Tensor:
  # float64: 0.2 is just above 1/5 there, so floor never drops below the exact value.
  return tf.cast(tf.math.floor(tf.cast(length, tf.float64) * ratio), tf.int32)


def placeholder_values(x: dict, caption: tf.Tensor, num_codes: int) -> dict:
  """Every placeholder's text for one example."""
  codes = tf.cast(x["codes"], tf.int32)
  length = tf.size(codes)
  prefix = _split_point(length, PREDICTION_RATIO)
  keep_head, keep_tail = _split_point(length, INBETWEEN_RATIO), _split_point(
      length, 1 - INBETWEEN_RATIO)
  masked = tf.concat([codes[:keep_head], tf.fill([keep_tail - keep_head], num_codes + 2),
                      codes[keep_tail:]], axis=0)
  seconds = tf.cast(x["num_frames"], tf.float32) / tf.cast(x["fps"], tf.float32)
  return {
      tpl.CAPTION: caption,
      tpl.MOTION: motion_string(codes, num_codes),
      tpl.FRAMES: tf.strings.as_string(x["num_frames"]),
      tpl.SECONDS: tf.strings.as_string(seconds, precision=1),
      tpl.PREDICTION_PREFIX: motion_string(codes[:prefix], num_codes),
      tpl.PREDICTION_TARGET: motion_string(codes[prefix:], num_codes),
      tpl.MASKED_MOTION: motion_string(masked, num_codes),
  }


def fill(template: tf.Tensor, values: dict) -> tf.Tensor:
  for placeholder, value in values.items():
    # The rewrite string treats backslashes specially; a caption's own must stay literal.
    value = tf.strings.regex_replace(value, r"\\", r"\\\\")
    template = tf.strings.regex_replace(template, placeholder, value)
  return template


def _choice(options: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  index = tf.random.stateless_uniform([], seed, 0, tf.size(options, tf.int32), tf.int32)
  return tf.gather(options, index)


# Graph code without Python control flow on tensors: skipping autograph saves seconds per pipeline.
_graph = tf.autograph.experimental.do_not_convert


@seqio.map_over_dataset(num_seeds=4)
@_graph
def _fill_example(x, seeds, inputs, outputs, quote_probability, num_codes):
  caption = _choice(x["captions"], seeds[0])
  quoted = tf.random.stateless_uniform([], seeds[1]) < quote_probability
  prompt_caption = tf.where(quoted, tf.strings.join(['"', caption, '"']), caption)
  # Quotes only ever go around a caption in the prompt: an answer is the caption as written
  # (the reference quotes answers too, so its captioning learns to emit quotes half the time).
  return {"id": x["id"],
          "inputs": fill(_choice(inputs, seeds[2]), placeholder_values(x, prompt_caption,
                                                                       num_codes)),
          "targets": fill(_choice(outputs, seeds[3]), placeholder_values(x, caption, num_codes)),
          # Every caption, the references of caption metrics (tasks/metrics.py).
          REFERENCES: tf.strings.reduce_join(x["captions"], separator="\n")}


def fill_templates(dataset: tf.data.Dataset, kind: str, subtask: str, task: str | None = None,
                   quote_probability: float = 0.5) -> tf.data.Dataset:
  """Prompt and answer strings from a random template pair of `subtask` in the `kind` bank.

  kind: 'instruct', 'pretrain' (the banks gin names in templates.bank_files) or 'eval'
  (the reference's fixed evaluation prompts, EVAL_TEMPLATES).
  """
  if kind == "eval":
    inputs, outputs = ([t] for t in tpl.EVAL_TEMPLATES[subtask])
  else:
    entry = tpl.bank(kind).get(subtask, task)
    inputs, outputs = list(tpl.with_eval_prompt(entry)), list(entry.outputs)
  num_codes = vocabulary.resolve().num_motion_codes
  return _fill_example(dataset, inputs=tf.constant(inputs), outputs=tf.constant(outputs),
                       quote_probability=quote_probability, num_codes=num_codes)


@seqio.map_over_dataset(num_seeds=1)
@_graph
def pick_caption(x, seed):
  """The 'text' of a text span-corruption example: one random caption of the entry."""
  return {"id": x["id"], "text": _choice(x["captions"], seed)}


def motion_ids(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """The 'text' of a motion span-corruption example: the motion span as vocabulary ids."""
  vocab = vocabulary.resolve()
  som, eom, offset = vocab.som_id, vocab.eom_id, vocab.motion_offset

  @_graph
  def to_ids(x):
    codes = tf.cast(x["codes"], tf.int32) + offset
    return {"id": x["id"], "text": tf.concat([[som], codes, [eom]], axis=0)}

  return dataset.map(to_ids, num_parallel_calls=tf.data.AUTOTUNE)


def tokenize_text(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """'text' string -> its vocabulary ids (for span corruption of captions)."""
  vocab = vocabulary.resolve()
  return dataset.map(_graph(lambda x: {"id": x["id"], "text": vocab.encode_tf(x["text"])}),
                     num_parallel_calls=tf.data.AUTOTUNE)
