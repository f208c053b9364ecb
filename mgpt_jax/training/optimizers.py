"""Optimizers and learning-rate schedules (optax), configured from gin."""
from __future__ import annotations

from typing import Sequence

import optax


def warmup_piecewise(peak: float, warmup_steps: int = 1000, boundaries: Sequence[int] = (),
                     factor: float = 0.05) -> optax.Schedule:
  """Linear warm-up to `peak`, then multiplied by `factor` at each boundary step.

  The T2M-GPT tokenizer recipe: 1K-step warm-up, x0.05 at 200K.
  """
  warmup = optax.linear_schedule(0.0, peak, max(warmup_steps, 1))
  decay = optax.piecewise_constant_schedule(peak, {b - warmup_steps: factor for b in boundaries})
  return optax.join_schedules([warmup, decay], [warmup_steps])


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int,
                  end_value: float = 1e-6) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(0.0, peak, max(warmup_steps, 1),
                                            max(total_steps, warmup_steps + 1), end_value)


def adamw(learning_rate: float | optax.Schedule, b1: float = 0.9, b2: float = 0.99,
          eps: float = 1e-8, weight_decay: float = 0.0,
          clip_norm: float | None = None) -> optax.GradientTransformation:
  """AdamW with the reference's betas (0.9, 0.99); optional global-norm clipping."""
  steps = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  steps.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  return optax.chain(*steps)
