"""T5 span corruption (the paper's stage-2 objective, reference §4.6) over any id sequence.

The noise mask is T5's `random_spans_noise_mask`: round(15 %) of the ids are noise, in
max(round(n_noise / 3), 1) spans, the sequence starting with a non-noise span. Each noise span
becomes one sentinel in the inputs; the targets are the dropped spans, each after its sentinel.

The sentinels are <extra_id_0>, <extra_id_1>, ... as the vocabulary numbers them
(`sentinel_id(k)`): t5's and seqio's helpers take `vocab_size - 1 - k`, which with motion ids
after the sentinels would be a motion id.
"""
from __future__ import annotations

import seqio
import tensorflow as tf

from tasks import vocabulary

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


def _random_segmentation(num_items, num_segments, seed):
  """Lengths of `num_segments` non-empty parts of `num_items`, cut at random."""
  cuts = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
  cuts = tf.random.experimental.stateless_shuffle(cuts, seed)
  segment_id = tf.cumsum(tf.pad(cuts, [[1, 0]]))
  return tf.math.unsorted_segment_sum(tf.ones_like(segment_id), segment_id, num_segments)


def random_spans_noise_mask(length, seeds, noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH):
  """bool [length]: which ids are noise."""
  original_length = length
  length = tf.maximum(length, 2)  # T5's rule: a single id still gets one noise id of two
  num_noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, length - 1)
  num_spans = tf.maximum(
      tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32), 1)
  noise_lengths = _random_segmentation(num_noise, num_spans, seeds[0])
  kept_lengths = _random_segmentation(length - num_noise, num_spans, seeds[1])
  interleaved = tf.reshape(tf.stack([kept_lengths, noise_lengths], axis=1), [-1])
  starts = tf.cumsum(interleaved)[:-1]
  start_indicator = tf.math.unsorted_segment_sum(tf.ones_like(starts), starts, length)
  is_noise = tf.equal(tf.cumsum(start_indicator) % 2, 1)
  return is_noise[:original_length]


def _spans_to_sentinels(ids, mask, first_sentinel):
  """Each run of masked ids -> one sentinel (descending ids from first_sentinel)."""
  previous = tf.pad(mask[:-1], [[1, 0]])
  first_of_span = mask & ~previous
  sentinels = first_sentinel + 1 - tf.cumsum(tf.cast(first_of_span, ids.dtype))
  ids = tf.where(first_of_span, sentinels, ids)
  return tf.boolean_mask(ids, ~(mask & previous))


@seqio.map_over_dataset(num_seeds=2)
@tf.autograph.experimental.do_not_convert  # graph code only; autograph would cost seconds
def _corrupt(x, seeds, first_sentinel, noise_density, mean_noise_span_length):
  ids = tf.cast(x["text"], tf.int32)
  mask = random_spans_noise_mask(tf.size(ids), seeds, noise_density, mean_noise_span_length)
  return {"id": x["id"],
          "inputs": _spans_to_sentinels(ids, mask, first_sentinel),
          "targets": _spans_to_sentinels(ids, ~mask, first_sentinel)}


def span_corruption(dataset: tf.data.Dataset, noise_density: float = NOISE_DENSITY,
                    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tf.data.Dataset:
  """{'text': ids} -> {'inputs', 'targets'} span-corrupted ids (no EOS yet)."""
  first_sentinel = vocabulary.resolve().sentinel_id(0)
  return _corrupt(dataset, first_sentinel=first_sentinel, noise_density=noise_density,
                  mean_noise_span_length=mean_noise_span_length)
