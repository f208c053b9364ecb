"""Tokenizer reconstruction on a held-out split: MPJPE, PA-MPJPE, acceleration error (mm),
codebook usage and perplexity.

As in the reference protocol each clip is encoded and decoded at its own length
(cropped to whole tokens); clips of equal length are batched, one compiled
function per length.
"""
from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax.data import formats
from mgpt_jax.data.features import jax_features_to_joints
from mgpt_jax.data.stats import Normalizer
from mgpt_jax.eval.metrics import joints as joint_metrics
from mgpt_jax.tokenizer.losses import smooth_l1

# Joint units to millimetres: HumanML3D joints are in metres; KIT-ML's are already ~mm.
UNIT_TO_MM = {"humanml3d": 1000.0, "kit": 1.0}


class ReconstructionEvaluator:

  def __init__(self, data_dir: str, split: str = "val", dataset: str = "humanml3d",
               stats_kind: str = "dataset", stats_dir: str | None = None,
               frames_per_token: int = 4, max_clips: int | None = None, batch_size: int = 32):
    data = formats.MotionDataset(data_dir, dataset)
    self.normalizer = Normalizer.from_dir(stats_dir or data_dir, stats_kind,
                                          data.skeleton.feature_dim)
    self.to_mm = UNIT_TO_MM[data.skeleton.name]
    self.batch_size = batch_size
    self.by_length: dict[int, list[np.ndarray]] = collections.defaultdict(list)
    clips, self.skipped = data.clips(split)
    for _, motion in clips[:max_clips]:
      length = len(motion) // frames_per_token * frames_per_token
      self.by_length[length].append(self.normalizer.normalize(motion[:length]))
    if not self.by_length:
      raise formats.MotionDataError(data_dir, f"no {split} clip to evaluate reconstruction on")
    self._batch_metrics = jax.jit(self._metrics, static_argnums=0)

  def _metrics(self, model, variables, motion):
    out = model.module.apply(variables, motion)
    mean, std = jnp.asarray(self.normalizer.mean), jnp.asarray(self.normalizer.std)
    predicted = jax_features_to_joints(out["reconstruction"] * std + mean)
    target = jax_features_to_joints(motion * std + mean)
    return {
        "mpjpe_mm": joint_metrics.mpjpe(predicted, target) * self.to_mm,
        "pa_mpjpe_mm": joint_metrics.pa_mpjpe(predicted, target) * self.to_mm,
        "accel_error_mm": joint_metrics.acceleration_error(predicted, target) * self.to_mm,
        "loss_feature": smooth_l1(out["reconstruction"], motion),
    }, out["indices"]

  def __call__(self, model, variables: dict[str, Any], step: int = 0) -> dict[str, float]:
    totals, frames = collections.defaultdict(float), 0
    codes = []
    for length, motions in sorted(self.by_length.items()):
      for i in range(0, len(motions), self.batch_size):
        batch = np.stack(motions[i:i + self.batch_size])
        metrics, indices = self._batch_metrics(model, variables, batch)
        weight = batch.shape[0] * length  # metrics are frame means: weight by frames
        for name, value in jax.device_get(metrics).items():
          totals[name] += float(value) * weight
        frames += weight
        codes.append(np.asarray(indices).ravel())
    results = {name: total / frames for name, total in totals.items()}
    counts = np.bincount(np.concatenate(codes), minlength=model.config.num_codes)
    probs = counts / counts.sum()
    results["codebook_usage"] = float((counts > 0).mean())
    results["perplexity"] = float(np.exp(-(probs * np.log(probs + 1e-7)).sum()))
    return results
