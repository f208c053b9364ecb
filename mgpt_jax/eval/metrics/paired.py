"""Two answers to the same items, compared item by item: the exact McNemar test.

A higher mean can come from chance when two answers disagree on only a few items; the test
asks whether the items only one of them passes split further from even than chance allows.
"""
from __future__ import annotations

import math
from typing import Sequence


def mcnemar(passed_a: Sequence[bool], passed_b: Sequence[bool]) -> dict:
  """{"only_a", "only_b", "p"}: the items only `a` passes, only `b` passes, and the exact
  two-sided p-value (the binomial test of the discordant items at one half)."""
  if len(passed_a) != len(passed_b):
    raise ValueError(f"{len(passed_a)} and {len(passed_b)} results: expected one per item, "
                     "the same items in the same order")
  only_a = sum(1 for a, b in zip(passed_a, passed_b) if a and not b)
  only_b = sum(1 for a, b in zip(passed_a, passed_b) if b and not a)
  n, k = only_a + only_b, min(only_a, only_b)
  tail = sum(math.comb(n, j) for j in range(k + 1))
  return {"only_a": only_a, "only_b": only_b, "p": min(1.0, 2 * tail / 2 ** n) if n else 1.0}
