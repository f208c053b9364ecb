"""The motion vocabulary: T5's SentencePiece text ids, 100 sentinels, then 515 motion ids.

    0 pad, 1 eos, 2 unk, 3 .. S-1          SentencePiece pieces (S = sentencepiece_size)
    S .. S+99                              <extra_id_99> .. <extra_id_0> (seqio's reversed order)
    S+100+k, k = 0..514                    <motion_id_k>: 512 codes, 512 som, 513 eom, 514 mask

With the real T5 model (S = 32000) `<extra_id_0>` = 32099 and `<motion_id_k>` = 32100 + k, the ids
of the official MotionGPT checkpoints (HF `add_tokens` after a 32100-token T5 tokenizer).

String form: `<motion_id_k>` (k < num_motion_tokens, written without leading zeros) is one token
wherever it appears, as an HF added token is; the text between such tokens goes through
SentencePiece piece by piece. SentencePiece drops the whitespace around each text piece, so
decoding cannot know it; `decode` writes one space between text and a motion token and none
between motion tokens: "Generate text: <motion_id_512><motion_id_7><motion_id_513>" round-trips.

Sentinels for span corruption: `vocab_size - 1 - k` is *not* `<extra_id_k>` here (it is a motion
id); use `sentinel_id(k)` or `text_vocabulary` (whose vocab_size - 1 - k is right).
"""
from __future__ import annotations

import functools
import os
from typing import Iterable, Sequence

import seqio
import tensorflow as tf
import tensorflow_text as tf_text

from mgpt_jax.lm.vocab_core import (MOTION_TOKEN, NUM_MOTION_CODES, NUM_MOTION_TOKENS,  # noqa: F401
                                    NUM_SENTINELS, VocabularyCore, VocabularyError,
                                    motion_token_pattern)


class MotionVocabulary(seqio.Vocabulary):
  """T5's SentencePiece vocabulary with 100 sentinels and `num_motion_tokens` motion ids after."""

  def __init__(self, sentencepiece_model: str | os.PathLike,
               num_motion_tokens: int = NUM_MOTION_TOKENS):
    # Layout, Python encode and decode: the TensorFlow-free core the bundle loads alone.
    self._core = VocabularyCore(sentencepiece_model, num_motion_tokens)
    self._path = self._core.path
    self._num_motion_tokens = self._core.num_motion_tokens
    self._pattern = self._core.pattern
    # The graph ops use seqio's own text vocabulary (its sentinels laid out as the core's); the
    # base class gets extra_ids=0 so that vocab_size does not count them twice.
    self._text = seqio.SentencePieceVocabulary(self._path, extra_ids=NUM_SENTINELS)
    super().__init__(extra_ids=0)

  # ------------------------------------------------------------------------- layout

  @property
  def core(self) -> VocabularyCore:
    return self._core

  @property
  def sentencepiece_model(self) -> str:
    return self._path

  @property
  def text_vocabulary(self) -> seqio.SentencePieceVocabulary:
    """The text part alone (pieces + sentinels): its vocab_size is `motion_offset`."""
    return self._text

  @property
  def sentencepiece_size(self) -> int:
    """Pieces in the SentencePiece model itself, without sentinels (32000 for T5)."""
    return self._core.sentencepiece_size

  @property
  def motion_offset(self) -> int:
    """The id of <motion_id_0>."""
    return self._core.motion_offset

  @property
  def num_motion_tokens(self) -> int:
    return self._num_motion_tokens

  @property
  def num_motion_codes(self) -> int:
    return self._core.num_motion_codes

  def motion_id(self, k: int) -> int:
    return self._core.motion_id(k)

  @property
  def som_id(self) -> int:
    return self._core.som_id

  @property
  def eom_id(self) -> int:
    return self._core.eom_id

  @property
  def mask_id(self) -> int:
    return self._core.mask_id

  def sentinel_id(self, k: int) -> int:
    """The id of <extra_id_k> (T5's k-th span-corruption sentinel, counted from 0)."""
    return self._core.sentinel_id(k)

  @property
  def bos_id(self) -> int | None:
    return None

  @property
  def eos_id(self) -> int:
    return 1

  @property
  def unk_id(self) -> int:
    return 2

  @property
  def _base_vocab_size(self) -> int:
    return self._core.vocab_size

  # ------------------------------------------------------------------------- Python

  def _encode(self, s: str) -> Sequence[int]:
    return self._core.encode(s)

  def decode(self, ids: Iterable[int]) -> str:
    """Ids to a string, up to and including the first EOS (as seqio); out-of-range ids raise."""
    return self._core.decode(ids)

  def _decode(self, ids) -> str:
    return self._core.decode_ids(list(ids))

  # ------------------------------------------------------------------------- TensorFlow

  # Plain graph code: autograph would spend about a second converting it in every pipeline.
  @tf.autograph.experimental.do_not_convert
  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """A scalar string to 1-D int32 ids; a 1-D batch of strings to a ragged [B, None]."""
    s = tf.convert_to_tensor(s, tf.string)
    if s.shape.rank == 0:
      return self._encode_tf(tf.expand_dims(s, 0))[0]
    pieces, _, _ = tf_text.regex_split_with_offsets(
        s, self._pattern, keep_delim_regex_pattern=self._pattern)
    flat = pieces.flat_values
    is_motion = tf.strings.regex_full_match(flat, self._pattern)
    # Motion pieces become empty text (no SentencePiece ids) plus one motion id, and vice versa.
    text_ids = self._text.tf_tokenizer.tokenize(tf.where(is_motion, "", flat))
    digits = tf.where(is_motion, tf.strings.regex_replace(flat, "[^0-9]", ""), "0")
    motion = self.motion_offset + tf.strings.to_number(digits, tf.int32)
    motion_ids = tf.RaggedTensor.from_row_lengths(
        tf.boolean_mask(motion, is_motion), tf.cast(is_motion, tf.int64))
    per_piece = tf.concat([tf.cast(text_ids, tf.int32).with_row_splits_dtype(tf.int64),
                           motion_ids], axis=1)
    return pieces.with_flat_values(per_piece).merge_dims(1, 2)

  @tf.autograph.experimental.do_not_convert
  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """1-D ids to a scalar string, 2-D [B, L] ids to [B] strings (the same text as `decode`).

    Unlike `decode` it cannot raise in a graph: seqio's `decode_tf` has already made ids
    >= vocab_size UNK (e.g. the unused rows of an embedding table padded to 32640).
    """
    if not isinstance(ids, tf.RaggedTensor):
      ids = tf.convert_to_tensor(ids)
      if ids.shape.rank == 1:
        return self._decode_tf(tf.expand_dims(ids, 0))[0]
      if ids.shape.rank != 2:
        raise VocabularyError(f"decode_tf expects 1-D or 2-D ids, got shape {ids.shape}")
      ids = tf.RaggedTensor.from_tensor(ids)
    ids = tf.cast(ids, tf.int32).with_row_splits_dtype(tf.int64)
    flat, row = ids.flat_values, ids.value_rowids()
    is_motion = flat >= self.motion_offset
    # A segment is a run of text ids in one row, or a single motion id.
    shift = lambda x, first: tf.concat([[first], x], axis=0)[:-1]
    start = (tf.not_equal(row, shift(row, tf.constant(-1, tf.int64))) | is_motion
             | shift(is_motion, True))
    segment = tf.cumsum(tf.cast(start, tf.int64)) - 1
    num_segments = tf.reduce_sum(tf.cast(start, tf.int64))
    text_ids = tf.RaggedTensor.from_value_rowids(tf.where(is_motion, 0, flat), segment,
                                                 nrows=num_segments)
    text = self._text.tf_tokenizer.detokenize(text_ids)
    names = tf.constant([MOTION_TOKEN.format(k) for k in range(self._num_motion_tokens)])
    first_id = tf.boolean_mask(flat, start)
    seg_motion = tf.boolean_mask(is_motion, start)
    seg_row = tf.boolean_mask(row, start)
    motion = tf.gather(names, tf.clip_by_value(first_id - self.motion_offset, 0,
                                               self._num_motion_tokens - 1))
    strings = tf.where(seg_motion, motion, text)
    keep = tf.strings.length(strings) > 0  # pads and EOS add neither text nor a space
    strings, seg_motion, seg_row = (tf.boolean_mask(x, keep)
                                    for x in (strings, seg_motion, seg_row))
    space = (tf.equal(seg_row, shift(seg_row, tf.constant(-1, tf.int64)))
             & tf.not_equal(seg_motion, shift(seg_motion, False)))
    strings = tf.strings.join([tf.where(space, " ", ""), strings])
    per_row = tf.RaggedTensor.from_value_rowids(strings, seg_row, nrows=ids.nrows())
    return tf.strings.reduce_join(per_row, axis=1)

  # ------------------------------------------------------------------------- identity

  def __eq__(self, other) -> bool:
    if not isinstance(other, MotionVocabulary):
      return False
    return (self._num_motion_tokens == other._num_motion_tokens
            and self._core.sp_model == other._core.sp_model)

  def __hash__(self) -> int:
    return hash((self._core.fingerprint(), self._num_motion_tokens))

  def __str__(self) -> str:
    return (f"MotionVocabulary(file={self._path}, sentencepiece_size={self.sentencepiece_size}, "
            f"num_motion_tokens={self._num_motion_tokens}, vocab_size={self.vocab_size})")

  __repr__ = __str__


def get_vocabulary(sentencepiece_model: str,
                   num_motion_tokens: int = NUM_MOTION_TOKENS) -> MotionVocabulary:
  """The vocabulary for a model file; cached, so gin, tasks and models share one object."""
  # Normalised before the cache: gin passes keywords, Python callers often positions.
  return _cached_vocabulary(os.fspath(sentencepiece_model), int(num_motion_tokens))


@functools.lru_cache(maxsize=None)
def _cached_vocabulary(sentencepiece_model: str, num_motion_tokens: int) -> MotionVocabulary:
  return MotionVocabulary(sentencepiece_model, num_motion_tokens)
