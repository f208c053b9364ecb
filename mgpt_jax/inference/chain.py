"""Motions longer than the training crops: chained generation with the prediction task.

    codes = extend(system, codes, target_codes, seed)  # each row grown to target_codes

Each round sends every row still short of its target, as one batch, to the prediction task
("Predict motion: <its last CHAIN_PREFIX_CODES codes>") and appends the continuation. The
caller decodes each row's codes in one VQ pass, so the decoder's convolutions run across the
joins as across any neighbouring codes: root velocity and pose carry on without a restart.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np



def join_frames(segments: Sequence[int], frames_per_token: int) -> list[int]:
  """Frame indices where each appended segment begins (for measuring the joins)."""
  return [int(n) * frames_per_token for n in np.cumsum(segments)[:-1]]


def extend(system, codes: Sequence[np.ndarray], target: int, seed: int | None,
           max_length: int | None = None, **sampling):
  """(codes, segments) per row: its codes continued until it holds `target` codes (then cut to
  exactly target), and the lengths of the pieces it is made of.

  Round r samples with seed + r (rows keep their own index), so a row's result does not depend
  on the other rows. Every answer adds at least one code ([0] where it has no span), so the
  loop ends within `target` rounds."""
  from mgpt_jax.inference.motiongpt import CHAIN_PREFIX_CODES  # pylint: disable=g-import-not-at-top
  rows = [np.asarray(c, np.int32) for c in codes]
  segments = [[len(c)] for c in rows]
  round_ = 0
  while short := [i for i, c in enumerate(rows) if len(c) < target]:
    round_ += 1
    prefixes = [rows[i][-CHAIN_PREFIX_CODES:] for i in short]
    round_seed = None if seed is None else (seed + round_) % 2**31
    answers = system.continue_codes(prefixes, round_seed, max_length, rows=short, **sampling)
    for i, more in zip(short, answers):
      rows[i] = np.concatenate([rows[i], more]).astype(np.int32)
      segments[i].append(len(more))
  for i, c in enumerate(rows):
    excess = len(c) - target
    rows[i] = c[:target]
    if excess > 0:
      segments[i][-1] -= excess
  return rows, segments
