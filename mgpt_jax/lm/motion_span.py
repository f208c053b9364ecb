"""Motion code arrays <-> motion spans, as vocabulary ids and as `<motion_id_k>` strings.

A span is start-of-motion, the codes, end-of-motion, as a string
`<motion_id_512><motion_id_3>...<motion_id_513>` (no spaces, the reference's
`motion_token_to_string`). Numpy only, so that host-side decoding and
evaluation need no TensorFlow.

Parsing generated output follows the reference (spec §4.3):
  * the span is what lies between the first start-of-motion and the first end-of-motion after it;
  * no start, no end (strict mode) or nothing between them gives `[0]`;
  * anything in the span that is not a motion code (text, a second start, mask) is dropped, and if
    nothing is left the result is `[0]`; codes are clamped to [0, num_codes - 1].
`strict_span=False` (lenient) also accepts an unterminated span: it runs to the first EOS (ids)
or to the end, which recovers motions whose generation hit max_length before end-of-motion.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # vocab imports TensorFlow; this module must not
  from mgpt_jax.lm.vocab import MotionVocabulary

NUM_CODES = 512  # codes 0..511; then start, end, mask
SOM, EOM, MASK = NUM_CODES, NUM_CODES + 1, NUM_CODES + 2
SOM_STRING = f"<motion_id_{SOM}>"
EOM_STRING = f"<motion_id_{EOM}>"
EOS_ID = 1
_TOKEN_RE = re.compile(r"<?motion_id_(\d+)>?")

VocabOrOffset = Union[int, "MotionVocabulary"]


def _layout(vocab_or_offset: VocabOrOffset) -> tuple[int, int]:
  """(id of <motion_id_0>, number of codes) from a MotionVocabulary or a bare offset."""
  if isinstance(vocab_or_offset, (int, np.integer)):
    return int(vocab_or_offset), NUM_CODES
  return int(vocab_or_offset.motion_offset), int(vocab_or_offset.num_motion_codes)


def _check_codes(codes, num_codes: int) -> np.ndarray:
  array = np.asarray(codes)
  if array.ndim != 1:
    raise ValueError(f"motion codes must be 1-D, got shape {array.shape}")
  if array.size and not np.issubdtype(array.dtype, np.integer):
    raise ValueError(f"motion codes must be integers, got dtype {array.dtype}")
  bad = (array < 0) | (array >= num_codes)
  if bad.any():
    raise ValueError(f"motion code {int(array[np.argmax(bad)])} at index {int(np.argmax(bad))} "
                     f"is out of range: expected 0 <= code < {num_codes}")
  return array.astype(np.int64)


# Motion prediction shows the first 20 % of the codes; in-between keeps the first and last 25 %
# (reference ABLATION predict_ratio / inbetween_ratio).
PREDICTION_RATIO = 0.2
INBETWEEN_RATIO = 0.25
MASK_STRING = f"<motion_id_{MASK}>"


def split_point(length: int, ratio: float) -> int:
  """floor(length * ratio): the reference's int(length * ratio + 1) - 1."""
  return int(np.floor(length * ratio))


def prediction_prompt_codes(codes: Sequence[int]) -> np.ndarray:
  """The codes a prediction prompt shows: the first floor(0.2 L)."""
  codes = np.asarray(codes)
  return codes[:split_point(len(codes), PREDICTION_RATIO)]


def gap(length: int) -> tuple[int, int]:
  """[head, tail): the codes an in-between prompt masks (the middle half)."""
  return split_point(length, INBETWEEN_RATIO), split_point(length, 1 - INBETWEEN_RATIO)


def fill_gap(given: Sequence[int], answer: Sequence[int]) -> np.ndarray:
  """The given codes with their gap taken from an in-between answer (a whole motion's codes);
  an answer too short for the gap repeats its last code, or the code before the gap."""
  given, answer = np.asarray(given), np.asarray(answer)
  head, tail = gap(len(given))
  middle = answer[head:tail]
  last = middle[-1:] if len(middle) else given[max(head - 1, 0):head]
  middle = np.concatenate([middle, np.repeat(last, tail - head - len(middle))])
  return np.concatenate([given[:head], middle, given[tail:]]).astype(np.int32)


def masked_string(codes: Sequence[int]) -> str:
  """The in-between prompt's span: head and tail kept, the middle half as mask tokens."""
  codes = np.asarray(codes)
  head, tail = gap(len(codes))
  inner = "".join(f"<motion_id_{int(c)}>" for c in codes[:head])
  inner += MASK_STRING * (tail - head)
  inner += "".join(f"<motion_id_{int(c)}>" for c in codes[tail:])
  return SOM_STRING + inner + EOM_STRING


def codes_to_ids(codes: Sequence[int], vocab_or_offset: VocabOrOffset) -> np.ndarray:
  """[som, offset + c0, ..., offset + cn, eom] as int32 ids."""
  offset, num_codes = _layout(vocab_or_offset)
  codes = _check_codes(codes, num_codes)
  som = offset + num_codes
  return np.concatenate([[som], offset + codes, [som + 1]]).astype(np.int32)


def codes_to_string(codes: Sequence[int]) -> str:
  """`<motion_id_512><motion_id_c0>...<motion_id_513>`, exactly the reference's string."""
  codes = _check_codes(codes, NUM_CODES)
  return SOM_STRING + "".join(f"<motion_id_{c}>" for c in codes) + EOM_STRING


def _finish(codes: list[int], num_codes: int) -> np.ndarray:
  if not codes:
    return np.zeros(1, np.int32)
  return np.clip(np.asarray(codes, np.int64), 0, num_codes - 1).astype(np.int32)


def ids_to_codes(ids: Sequence[int], vocab_or_offset: VocabOrOffset, strict_span: bool = True,
                 eos_id: int = EOS_ID) -> np.ndarray:
  """The motion codes of a generated id sequence (see the module docstring for the rules)."""
  offset, num_codes = _layout(vocab_or_offset)
  ids = np.asarray(ids)
  if ids.ndim != 1:
    raise ValueError(f"ids must be a 1-D sequence, got shape {ids.shape}")
  som, eom = offset + num_codes, offset + num_codes + 1
  starts = np.flatnonzero(ids == som)
  if not starts.size:
    return _finish([], num_codes)
  rest = ids[starts[0] + 1:]
  ends = np.flatnonzero(rest == eom)
  if ends.size:
    span = rest[:ends[0]]
  elif strict_span:
    return _finish([], num_codes)
  else:
    stops = np.flatnonzero(rest == eos_id)
    span = rest[:stops[0]] if stops.size else rest
  codes = [int(i) - offset for i in span if offset <= i < offset + num_codes]
  return _finish(codes, num_codes)


def _span_text(text: str, strict_span: bool) -> str | None:
  """What lies between the first start-of-motion and the end-of-motion after it (or the end)."""
  start = text.find(SOM_STRING)
  if start < 0:
    return None
  rest = text[start + len(SOM_STRING):]
  end = rest.find(EOM_STRING)
  if end >= 0:
    return rest[:end]
  return None if strict_span else rest


def _span_string_codes(span: str) -> list[int]:
  codes = []
  for piece in span.split("><"):
    for match in _TOKEN_RE.finditer(piece):
      k = int(match.group(1))
      if k not in (SOM, EOM, MASK):  # specials inside a span carry no motion
        codes.append(k)  # beyond the specials: clamped, as the reference clamps at evaluation
  return codes


def string_to_codes(text: str, strict_span: bool = True) -> np.ndarray:
  """The motion codes of a generated string (reference rules; the span runs to the end if lenient).

  The reference splits the span on '><' and reads the number of each piece; this reads every
  `<motion_id_k>` in the span, which is the same on well-formed spans and drops stray text piece
  by piece (as `ids_to_codes` drops text ids) instead of failing on it.
  """
  span = _span_text(text, strict_span)
  return _finish([] if span is None else _span_string_codes(span), NUM_CODES)


def span_codes(text: str) -> np.ndarray | None:
  """The codes of the first complete span of `text`, or None where it has none.

  None is where the strict `string_to_codes` falls back to [0]: no start-of-motion, no
  end-of-motion after it, or no code between them.
  """
  span = _span_text(text, strict_span=True)
  codes = [] if span is None else _span_string_codes(span)
  return _finish(codes, NUM_CODES) if codes else None
