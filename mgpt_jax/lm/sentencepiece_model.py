"""Trains a small SentencePiece model in T5's id layout for the text part of the vocabulary.

T5's layout: pad 0, eos 1, unk 2, no BOS, no user-defined pieces, unigram model, default
NFKC normalisation (extra whitespace removed, dummy `▁` prefix). `MotionVocabulary` appends the
100 sentinels and 515 motion ids after the pieces, so a model trained here behaves like the real
T5 one, only smaller.

Users with the real T5 vocabulary (e.g. `gs://t5-data/vocabs/cc_all.32000/sentencepiece.model`
or `spiece.model` of a Flan-T5 checkpoint) do not train anything: they pass that file's path as
the vocabulary's `sentencepiece_model`, which gives the official ids (`<motion_id_k>` = 32100 + k).
A model trained here is for offline work, tests and from-scratch experiments only: its ids do not
match any released checkpoint.
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Iterator

import sentencepiece as spm

from mgpt_jax import atomic_io

# The T5 layout; the piece strings are the ones T5's own model uses, so that HF tokenizers built
# from the file find their special tokens.
T5_SPECIAL_PIECES = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                         pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>")


class SentencePieceTrainingError(ValueError):
  """The corpus cannot give a model of the requested size (or training failed otherwise)."""

  def __init__(self, message: str, max_vocab_size: int | None = None):
    super().__init__(message)
    self.max_vocab_size = max_vocab_size  # the largest size this corpus allows, when known


def _sentences(texts: Iterable[str]) -> Iterator[str]:
  for text in texts:
    # The trainer reads one sentence per item; a caption with a line break is two sentences.
    for line in str(text).splitlines():
      if line.strip():
        yield line.strip()


def train_sentencepiece(texts: Iterable[str], out_path: str | os.PathLike,
                        vocab_size: int = 1000, character_coverage: float = 1.0,
                        max_sentences: int = 0) -> str:
  """Trains a unigram model on `texts` and writes it atomically to `out_path` (a .model file).

  Training is deterministic (one thread; no sentence sampling: `max_sentences` > 0 keeps only the
  first that many sentences) and quiet. `vocab_size`
  counts the three special pieces; too large a size for the corpus raises
  SentencePieceTrainingError saying the largest size the corpus allows. Returns the path.
  """
  out_path = os.fspath(out_path)
  sentences = list(_sentences(texts))
  if not sentences:
    raise SentencePieceTrainingError(f"{out_path}: no non-empty text to train on")
  if vocab_size < 4:
    raise SentencePieceTrainingError(
        f"{out_path}: vocab_size {vocab_size} is too small; it must exceed the 3 special pieces")
  options = dict(
      model_type="unigram", vocab_size=vocab_size, character_coverage=character_coverage,
      num_threads=1, input_sentence_size=max_sentences, shuffle_input_sentence=False,
      minloglevel=2, **T5_SPECIAL_PIECES)
  proto = _train(sentences, options, out_path)
  with atomic_io.atomic_path(out_path) as tmp:
    with open(tmp, "wb") as f:
      f.write(proto)
  return out_path


def _train(sentences: list[str], options: dict, out_path: str) -> bytes:
  writer = _BytesWriter()
  try:
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=writer,
                                   **options)
  except RuntimeError as e:
    message = str(e)
    vocab_size = options["vocab_size"]
    too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
    if too_high:
      raise SentencePieceTrainingError(
          f"{out_path}: vocab_size {vocab_size} is larger than this corpus "
          f"({len(sentences)} sentences) allows; use vocab_size {too_high.group(2)} or less, "
          "or train on more text", max_vocab_size=int(too_high.group(2))) from None
    too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_low:
      raise SentencePieceTrainingError(
          f"{out_path}: vocab_size {vocab_size} is smaller than the {too_low.group(2)} pieces the "
          "corpus' characters need; raise vocab_size or lower character_coverage") from None
    raise SentencePieceTrainingError(f"{out_path}: SentencePiece training failed: {message}") \
        from None
  if not writer.data:
    raise SentencePieceTrainingError(f"{out_path}: SentencePiece returned no model")
  return writer.data


class _BytesWriter:
  """The trainer's `model_writer`: it only needs `write(bytes)`."""

  def __init__(self):
    self.data = b""

  def write(self, data: bytes) -> None:
    self.data += data
