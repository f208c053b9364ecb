"""The one vocabulary of the tasks and the model, resolved when first used.

seqio tasks are registered on import, before gin has read the bindings that say which
SentencePiece model to use. So every task holds `motion_vocabulary()`, one deferred object
that looks its settings up (`settings`, gin-configurable) when it is first asked for ids; gin
files give the model the same object (`@vocabulary.motion_vocabulary()`), so T5X's check that
the model's and the tasks' vocabularies are equal holds by construction.

    vocabulary.settings.sentencepiece_model = '/data/flan-t5-base/spiece.model'

The default is T5's public SentencePiece model, which gives the official ids
(<motion_id_k> = 32100 + k). Offline, `dataset_sentencepiece` trains a small one on a
dataset's training captions (the synthetic set's gin file does that).
"""
from __future__ import annotations

import os

import gin
import seqio
from absl import logging

from mgpt_jax.data import formats
from mgpt_jax.lm import sentencepiece_model
from mgpt_jax.lm.vocab import NUM_MOTION_TOKENS, MotionVocabulary, get_vocabulary
from tasks import templates

T5_SENTENCEPIECE = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
ROW_MULTIPLE = 128  # embedding rows are padded as T5 pads its 32100 ids to 32128


@gin.configurable
def settings(sentencepiece_model: str = T5_SENTENCEPIECE,
             num_motion_tokens: int = NUM_MOTION_TOKENS) -> tuple[str, int]:
  return os.fspath(sentencepiece_model), int(num_motion_tokens)


def resolve() -> MotionVocabulary:
  """The MotionVocabulary the current settings name (cached per settings)."""
  return get_vocabulary(*settings())


class DeferredMotionVocabulary(seqio.Vocabulary):
  """A seqio.Vocabulary that forwards everything to `resolve()` at the time of use."""

  def __init__(self):
    super().__init__(extra_ids=0)

  def __getattr__(self, name):
    # Only reached for names this class lacks: motion_offset, sentinel_id, som_id, ...
    if name.startswith("__"):
      raise AttributeError(name)
    return getattr(resolve(), name)

  @property
  def eos_id(self):
    return resolve().eos_id

  @property
  def unk_id(self):
    return resolve().unk_id

  @property
  def pad_id(self):
    return resolve().pad_id

  @property
  def _base_vocab_size(self):
    return resolve().vocab_size

  def _encode(self, s):
    return resolve().encode(s)

  def _decode(self, ids):
    return resolve().decode(ids)

  def _encode_tf(self, s):
    return resolve().encode_tf(s)

  def _decode_tf(self, ids):
    return resolve().decode_tf(ids)

  def __eq__(self, other):
    if isinstance(other, DeferredMotionVocabulary):
      return True
    return resolve() == other

  def __hash__(self):
    return hash(resolve())

  def __str__(self):
    return f"Deferred({resolve()})"


_VOCABULARY = DeferredMotionVocabulary()


@gin.configurable
def motion_vocabulary() -> DeferredMotionVocabulary:
  """The vocabulary of every registered task; bind models' vocabularies to this too."""
  return _VOCABULARY


@gin.configurable
def model_rows(multiple: int = ROW_MULTIPLE) -> int:
  """Embedding rows for the vocabulary: its size rounded up (32615 -> 32640 for T5's)."""
  size = resolve().vocab_size
  return -(-size // multiple) * multiple


@gin.configurable
def dataset_sentencepiece(data_dir: str, vocab_size: int = 500, split: str = "train") -> str:
  """A T5-layout SentencePiece model trained once into data_dir/spm/ on the split's captions and
  the template banks' words (so that prompts need no <unk>), plus every digit.

  For offline and from-scratch work (the synthetic set); its ids match no released checkpoint.
  """
  path = os.path.join(data_dir, "spm", f"{split}_captions_templates_{vocab_size}.model")
  if not os.path.exists(path):
    texts, skipped = formats.dataset_captions(data_dir, split)
    if skipped:
      raise formats.MotionDataError(skipped[0][0], f"unreadable caption file ({skipped[0][1]}); "
                                    f"{len(skipped)} in all")
    for kind in ("instruct", "pretrain"):
      for subtask in templates.bank(kind).subtasks:
        texts += [templates.PLACEHOLDER_RE.sub(" ", t) for t in subtask.inputs + subtask.outputs]
    texts.append("0 1 2 3 4 5 6 7 8 9 \" ' , . ? ! : ; ( ) -")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
      sentencepiece_model.train_sentencepiece(texts, path, vocab_size=vocab_size)
    except sentencepiece_model.SentencePieceTrainingError as e:
      if e.max_vocab_size is None:
        raise
      # A small dataset cannot fill the requested size: take the most pieces it allows.
      logging.info("%s; training %d pieces instead", e, e.max_vocab_size)
      sentencepiece_model.train_sentencepiece(texts, path, vocab_size=e.max_vocab_size)
  return path
