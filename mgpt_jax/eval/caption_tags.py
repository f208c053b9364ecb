"""Generated captions -> the "word/POS" tokens the T2M text encoder reads.

The reference runs spaCy's `en_core_web_sm` on each generated caption: hyphens removed,
non-alphabetic tokens dropped, NOUN/VERB lemmatised except "left", POS from the tagger.
That spaCy model is not on the package registries, so two taggers share one interface:

- `SpacyTagger`: the reference procedure, when spaCy and the model are installed;
- `LexiconTagger`: the same procedure with (lemma, POS) looked up per word in the
  dataset's own annotations (every caption line carries spaCy's "word/POS" tokens), the
  most frequent reading of each surface word winning. Words never seen there keep their
  surface form with POS OTHER, which is also what the word vectoriser does with unknown
  words. On captions whose words are all in the lexicon both taggers agree except where
  spaCy's reading depends on context.
"""
from __future__ import annotations

import collections
import re
from typing import Callable, Iterable, Sequence

from mgpt_jax.data import formats

Tagger = Callable[[str], list[str]]
_WORD = re.compile(r"[A-Za-z]+")


def surface_words(text: str) -> list[str]:
  """The alphabetic words of a caption, lower-cased, hyphens joined as the reference does."""
  return [w.lower() for w in _WORD.findall(text.replace("-", ""))]


class LexiconTagger:
  """(lemma, POS) per surface word, learnt from annotated captions."""

  def __init__(self, readings: dict[str, tuple[str, str]]):
    self.readings = readings

  @classmethod
  def from_captions(cls, captions: Iterable[formats.Caption]) -> "LexiconTagger":
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for caption in captions:
      words = surface_words(caption.text)
      if len(words) != len(caption.tokens):
        continue  # tokenisation differs (contractions, digits): the pairing would be wrong
      for word, token in zip(words, caption.tokens):
        lemma, _, pos = token.rpartition("/")
        counts[word][(lemma.lower(), pos)] += 1
    return cls({word: c.most_common(1)[0][0] for word, c in counts.items()})

  @classmethod
  def from_dataset(cls, data_dir: str, splits: Sequence[str] = ("train",)) -> "LexiconTagger":
    data, captions = formats.MotionDataset(data_dir), []
    for split in splits:
      for motion_id in data.split_ids(split):
        try:
          captions.extend(data.captions(motion_id))
        except formats.MotionDataError:
          continue  # a bad caption file only costs its words; validation reports it
    tagger = cls.from_captions(captions)
    if not tagger.readings:
      raise formats.MotionDataError(data_dir, f"no annotated caption in splits {list(splits)} to "
                                    "learn word/POS readings from")
    return tagger

  def __call__(self, text: str) -> list[str]:
    out = []
    for word in surface_words(text):
      lemma, pos = self.readings.get(word, (word, "OTHER"))
      out.append(f"{lemma}/{pos}")
    return out


class SpacyTagger:
  """The reference's procedure with a spaCy pipeline (default `en_core_web_sm`)."""

  def __init__(self, model: str = "en_core_web_sm"):
    try:
      import spacy  # pylint: disable=g-import-not-at-top
      self.nlp = spacy.load(model)
    except (ImportError, OSError) as e:
      raise RuntimeError(f"spaCy model {model!r} is not available ({e}); use the dataset "
                         "lexicon tagger instead") from e

  def __call__(self, text: str) -> list[str]:
    out = []
    for token in self.nlp(text.replace("-", "").lower()):
      word = token.text
      if not word.isalpha():
        continue
      if token.pos_ in ("NOUN", "VERB") and word != "left":
        word = token.lemma_
      out.append(f"{word}/{token.pos_}")
    return out


def make_tagger(data_dir: str, spacy_model: str | None = None) -> tuple[Tagger, str]:
  """spaCy when a model is named and loads, else the dataset lexicon; returns (tagger, what)."""
  if spacy_model:
    return SpacyTagger(spacy_model), f"spaCy {spacy_model}"
  return LexiconTagger.from_dataset(data_dir), "dataset lexicon (train captions' word/POS)"
