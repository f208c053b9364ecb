"""Caption tokens ("word/POS") -> GloVe vectors and POS one-hots, as the T2M evaluator saw them.

The evaluator was trained on the dataset's spaCy tokens: each "word/POS" becomes the
word's 300-d GloVe vector plus a 15-way POS one-hot, where a hand-picked list of
motion words (VIP) overrides the tagger's POS. A caption is cut to 20 tokens,
wrapped in sos/eos and padded with unk to 22 steps; its length counts sos and eos.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POS_CLASSES = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
               "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER")
POS_INDEX = {name: i for i, name in enumerate(POS_CLASSES)}
OTHER = "OTHER"

# Words whose POS is replaced by their VIP class (checked in this order, first match wins).
VIP_WORDS = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward",
                "back", "backward", "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye",
                 "knee", "shoulder", "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail",
                "baseball", "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop",
                "dance", "jump", "turn", "stumble", "stop", "sit", "lift", "lower", "raise",
                "wash", "stand", "kneel", "stroll", "rub", "bend", "balance", "flap", "jog",
                "shuffle", "lean", "rotate", "spin", "spread", "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry",
                 "sad", "happily", "angrily", "sadly"),
}
VIP_POS: dict[str, str] = {}
for _pos, _words in VIP_WORDS.items():
  for _word in _words:
    VIP_POS.setdefault(_word, _pos)

UNK, SOS, EOS = "unk", "sos", "eos"
REQUIRED_WORDS = (UNK, SOS, EOS)
MAX_TEXT_LEN = 20


def split_token(token: str) -> tuple[str, str]:
  """"word/POS" -> (word, POS); the POS is after the last '/'."""
  if not isinstance(token, str):
    raise ValueError(f"expected a 'word/POS' string token, got {type(token).__name__} {token!r}")
  word, sep, pos = token.rpartition("/")
  if not sep or not word:
    raise ValueError(f"caption token {token!r}: expected 'word/POS' (e.g. 'walk/VERB')")
  return word, pos


class WordVectorizer:
  """The evaluator's word table: `words[i]` has vector `vectors[i]`."""

  def __init__(self, words: Sequence[str], vectors: np.ndarray, source: str = "word table"):
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
      raise ValueError(f"{source}: expected a float (N, dim) vector table, got {vectors.dtype} "
                       f"{vectors.shape}")
    if len(words) != vectors.shape[0]:
      raise ValueError(f"{source}: {len(words)} words but {vectors.shape[0]} vectors")
    if not np.isfinite(vectors).all():
      raise ValueError(f"{source}: the vector table contains NaN or Inf")
    index: dict[str, int] = {}
    for i, word in enumerate(words):
      if not isinstance(word, str):
        raise ValueError(f"{source}: word {i} is {type(word).__name__} {word!r}, expected a str")
      if word in index:
        raise ValueError(f"{source}: word {word!r} appears twice (entries {index[word]} and {i})")
      index[word] = i
    missing = [w for w in REQUIRED_WORDS if w not in index]
    if missing:
      raise ValueError(f"{source}: the word table lacks {missing}; the evaluator needs "
                       f"{list(REQUIRED_WORDS)} for unknown words and sentence start/end")
    self.words = list(words)
    self.vectors = vectors.astype(np.float32)
    self.index = index

  def __len__(self) -> int:
    return len(self.words)

  @property
  def dim(self) -> int:
    return int(self.vectors.shape[1])

  def lookup(self, token: str) -> tuple[np.ndarray, int]:
    """(word vector, POS class index) of one "word/POS" token."""
    word, pos = split_token(token)
    row = self.index.get(word)
    if row is None:  # unknown words lose their POS too
      return self.vectors[self.index[UNK]], POS_INDEX[OTHER]
    pos = VIP_POS.get(word, pos)
    return self.vectors[row], POS_INDEX.get(pos, POS_INDEX[OTHER])

  def encode(self, tokens: Sequence[str], max_len: int = MAX_TEXT_LEN):
    """-> word_embs (max_len+2, dim), pos_onehot (max_len+2, 15), length (with sos/eos)."""
    if isinstance(tokens, str):
      raise ValueError(f"expected a sequence of 'word/POS' tokens, got the string {tokens[:60]!r}; "
                       "split the caption's token field on spaces first")
    tokens = [f"{SOS}/{OTHER}"] + list(tokens)[:max_len] + [f"{EOS}/{OTHER}"]
    length = len(tokens)
    tokens += [f"{UNK}/{OTHER}"] * (max_len + 2 - length)
    word_embs = np.zeros((len(tokens), self.dim), np.float32)
    pos_onehot = np.zeros((len(tokens), len(POS_CLASSES)), np.float32)
    for i, token in enumerate(tokens):
      word_embs[i], pos = self.lookup(token)
      pos_onehot[i, pos] = 1.0
    return word_embs, pos_onehot, length

  def encode_batch(self, token_lists: Sequence[Sequence[str]], max_len: int = MAX_TEXT_LEN):
    """-> (B, max_len+2, dim), (B, max_len+2, 15), (B,) int32."""
    if isinstance(token_lists, str):
      raise ValueError("encode_batch: expected a list of token lists, got a string")
    encoded = [self.encode(tokens, max_len) for tokens in token_lists]
    if not encoded:
      steps = max_len + 2
      return (np.zeros((0, steps, self.dim), np.float32),
              np.zeros((0, steps, len(POS_CLASSES)), np.float32), np.zeros((0,), np.int32))
    word_embs, pos_onehot, lengths = zip(*encoded)
    return np.stack(word_embs), np.stack(pos_onehot), np.asarray(lengths, np.int32)
