"""The motion vocabulary's layout, encode and decode on SentencePiece alone (no TensorFlow, no seqio).

    core = VocabularyCore("sentencepiece.model")
    ids = core.encode("Generate text: <motion_id_512><motion_id_7><motion_id_513>")
    core.decode(ids)  # the same string back

`vocab.MotionVocabulary` (the seqio.Vocabulary the tasks use) delegates its Python encode and
decode here, so the bundle, which loads this alone, tokenizes exactly as training did. The
layout is documented in vocab.py. The 100 sentinels are added to the SentencePiece model proto
as user-defined pieces `▁<extra_id_k>` in reversed order, as seqio's SentencePieceVocabulary does,
so that `<extra_id_k>` in a string is one piece here as there.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Iterable

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

NUM_SENTINELS = 100  # T5's <extra_id_0..99>
NUM_MOTION_CODES = 512
NUM_MOTION_TOKENS = NUM_MOTION_CODES + 3  # codes, som, eom, mask
MOTION_TOKEN = "<motion_id_{}>"
T5_LAYOUT = {"pad": 0, "eos": 1, "unk": 2, "bos": -1}


class VocabularyError(ValueError):
  """A vocabulary file that cannot be used, or an id/string the vocabulary cannot map."""


def motion_token_pattern(num_motion_tokens: int = NUM_MOTION_TOKENS) -> str:
  """A regex (Python re and RE2) matching exactly the strings <motion_id_0> .. <motion_id_{n-1}>."""
  # An explicit alternation: <motion_id_007> or <motion_id_515> stay text, as in HF.
  return "<motion_id_(?:" + "|".join(str(k) for k in range(num_motion_tokens)) + ")>"


def sentinel_model_proto(path: str) -> bytes:
  """The SentencePiece model at `path` with the 100 sentinels appended (seqio's layout)."""
  try:
    with open(path, "rb") as f:
      model = sentencepiece_model_pb2.ModelProto.FromString(f.read())
  except FileNotFoundError:
    raise VocabularyError(f"{path}: SentencePiece model not found") from None
  except Exception as e:  # protobuf's DecodeError and friends
    raise VocabularyError(f"{path}: not a readable SentencePiece model "
                          f"({type(e).__name__}: {e})") from None
  for k in reversed(range(NUM_SENTINELS)):
    model.pieces.add(piece=f"▁<extra_id_{k}>", score=0.0,
                     type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
  return model.SerializeToString()


class VocabularyCore:
  """Pieces, sentinels, then `num_motion_tokens` motion ids: ids <-> strings in Python."""

  pad_id, eos_id, unk_id, bos_id = 0, 1, 2, None

  def __init__(self, sentencepiece_model: str | os.PathLike,
               num_motion_tokens: int = NUM_MOTION_TOKENS):
    if num_motion_tokens < 4:
      raise VocabularyError(f"num_motion_tokens {num_motion_tokens}: expected >= 4 "
                            "(at least one code plus start, end and mask)")
    self.path = os.fspath(sentencepiece_model)
    self.num_motion_tokens = int(num_motion_tokens)
    self.pattern = motion_token_pattern(self.num_motion_tokens)
    self._split_re = re.compile(f"({self.pattern})")
    self.sp_model = sentinel_model_proto(self.path)
    self.tokenizer = spm.SentencePieceProcessor()
    self.tokenizer.LoadFromSerializedProto(self.sp_model)
    layout = {"pad": self.tokenizer.pad_id(), "eos": self.tokenizer.eos_id(),
              "unk": self.tokenizer.unk_id(), "bos": self.tokenizer.bos_id()}
    if layout != T5_LAYOUT:
      raise VocabularyError(f"{self.path}: special ids {layout}; expected T5's {T5_LAYOUT} "
                            "(train with mgpt_jax.lm.sentencepiece_model)")

  # ------------------------------------------------------------------------- layout

  @property
  def sentencepiece_size(self) -> int:
    """Pieces in the SentencePiece model itself, without sentinels (32000 for T5)."""
    return self.tokenizer.GetPieceSize() - NUM_SENTINELS

  @property
  def motion_offset(self) -> int:
    """The id of <motion_id_0>."""
    return self.sentencepiece_size + NUM_SENTINELS

  @property
  def vocab_size(self) -> int:
    return self.motion_offset + self.num_motion_tokens

  @property
  def num_motion_codes(self) -> int:
    return self.num_motion_tokens - 3

  def motion_id(self, k: int) -> int:
    if not 0 <= k < self.num_motion_tokens:
      raise VocabularyError(f"motion token {k}: expected 0 <= k < {self.num_motion_tokens}")
    return self.motion_offset + int(k)

  @property
  def som_id(self) -> int:
    return self.motion_offset + self.num_motion_codes

  @property
  def eom_id(self) -> int:
    return self.som_id + 1

  @property
  def mask_id(self) -> int:
    return self.som_id + 2

  def sentinel_id(self, k: int) -> int:
    """The id of <extra_id_k> (T5's k-th span-corruption sentinel, counted from 0)."""
    if not 0 <= k < NUM_SENTINELS:
      raise VocabularyError(f"sentinel {k}: expected 0 <= k < {NUM_SENTINELS}")
    return self.motion_offset - 1 - int(k)

  # ------------------------------------------------------------------------- strings

  def encode(self, s: str) -> list[int]:
    ids = []
    # re.split with one group: even items are text, odd items are motion tokens.
    for i, piece in enumerate(self._split_re.split(s)):
      if i % 2:
        ids.append(self.motion_offset + int(piece[len("<motion_id_"):-1]))
      elif piece:
        ids.extend(self.tokenizer.EncodeAsIds(piece))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Ids to a string, up to and including the first EOS (as seqio); out-of-range ids raise."""
    if hasattr(ids, "numpy"):  # an eager tf.Tensor
      ids = ids.numpy()
    array = np.asarray(ids if hasattr(ids, "__array__") else list(ids))
    if array.ndim != 1:
      raise VocabularyError(f"decode expects a 1-D id sequence, got shape {array.shape}")
    ids = [int(i) for i in array]
    for i in ids:
      if not 0 <= i < self.vocab_size:
        raise VocabularyError(f"id {i} is out of range: expected 0 <= id < {self.vocab_size} "
                              f"({self})")
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id) + 1]
    return self.decode_ids(ids)

  def decode_ids(self, ids: list[int]) -> str:
    """Ids to text without the EOS cut: text runs through SentencePiece, motion ids by name,
    one space between text and motion and none between motion tokens."""
    segments, text = [], []

    def flush():
      if text:
        segments.append((False, self.tokenizer.DecodeIds(text)))
        text.clear()

    for i in ids:
      if i >= self.motion_offset:
        flush()
        segments.append((True, MOTION_TOKEN.format(i - self.motion_offset)))
      else:
        text.append(int(i))
    flush()
    out, previous = "", None
    for is_motion, piece in segments:
      if not piece:
        continue  # pads and EOS decode to nothing and must not add a space
      if previous is not None and previous != is_motion:
        out += " "
      out, previous = out + piece, is_motion
    return out

  def __reduce__(self):  # the SentencePiece processor does not pickle: rebuild from the file
    return type(self), (self.path, self.num_motion_tokens)

  def fingerprint(self) -> str:
    return hashlib.md5(self.sp_model).hexdigest()

  def __str__(self) -> str:
    return (f"vocabulary(file={self.path}, sentencepiece_size={self.sentencepiece_size}, "
            f"num_motion_tokens={self.num_motion_tokens}, vocab_size={self.vocab_size})")
