"""The caption-retrieval baseline: answer a caption with the training motion whose caption
is most similar (TF-IDF cosine over words), generating nothing.

A generator that cannot beat it has learnt no more than a lookup of the training set.
"""
from __future__ import annotations

import collections
import math

import numpy as np

from mgpt_jax.data import formats
from mgpt_jax.eval.caption_tags import surface_words


class CaptionRetriever:
  """Nearest training entry by TF-IDF cosine of caption words."""

  def __init__(self, data: formats.MotionDataset, split: str = "train"):
    listing = data.entries(split, on_error="skip")
    if not listing.entries:
      raise formats.MotionDataError(data.root, f"no {split} entry to retrieve from "
                                    f"({listing.summary()})")
    self.data = data
    self.documents = [(entry, caption.text) for entry in listing.entries
                      for caption in entry.captions]
    counts = [collections.Counter(surface_words(text)) for _, text in self.documents]
    df = collections.Counter(w for c in counts for w in c)
    self.idf = {w: math.log(len(counts) / n) + 1.0 for w, n in df.items()}
    self.vocab = {w: i for i, w in enumerate(sorted(self.idf))}
    self.matrix = np.stack([self._vector(c) for c in counts])

  def _vector(self, counts: collections.Counter) -> np.ndarray:
    v = np.zeros(len(self.vocab), np.float32)
    for w, n in counts.items():
      if w in self.vocab:
        v[self.vocab[w]] = n * self.idf[w]
    return v / max(np.linalg.norm(v), 1e-8)

  def nearest(self, text: str) -> tuple[formats.Entry, str]:
    """The training entry (and its caption) closest to `text`."""
    scores = self.matrix @ self._vector(collections.Counter(surface_words(text)))
    return self.documents[int(np.argmax(scores))]

  def motions(self, texts) -> list[np.ndarray]:
    """The retrieved entries' ground-truth features, one per text."""
    return [self.data.motion(self.nearest(t)[0]) for t in texts]
