"""The trivial answers each task's model must beat, as systems the protocol runs like a model.

- t2m: caption retrieval (the training motion whose caption is nearest by TF-IDF) and a random
  training motion;
- m2t: motion retrieval (the caption of the nearest training motion by a pooled feature distance);
- prediction: hold the last given pose, the root moving on at its last velocity;
- in-between: linear interpolation between the last kept frame before the gap and the first after.

Prediction and in-between see exactly what the model sees: the frames of the codes its prompt
shows (`lm.motion_span` split points at `frames_per_token` frames a code). In HumanML3D / KIT
features the pose is root-relative and the root moves by per-frame velocities, so repeating the
last feature row holds the pose while the root keeps its last linear and angular velocity, and
interpolating feature rows interpolates the root's velocities and the root-relative joints.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mgpt_jax.data import formats
from mgpt_jax.eval.caption_retrieval import CaptionRetriever
from mgpt_jax.lm import motion_span


class CaptionRetrievalT2M:
  """Text-to-motion by lookup: the training motion of the nearest training caption."""

  def __init__(self, retriever: CaptionRetriever):
    self.retriever = retriever

  def text_to_motion(self, texts: Sequence[str], seed: int = 0):
    del seed  # deterministic
    return [(m, None) for m in self.retriever.motions(texts)]


class RandomMotionT2M:
  """Text-to-motion that ignores the text: a training motion drawn at random."""

  def __init__(self, data: formats.MotionDataset, split: str = "train"):
    self.data = data
    self.entries = _entries(data, split)

  def text_to_motion(self, texts: Sequence[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(self.entries), size=len(texts))
    return [(self.data.motion(self.entries[int(i)]), None) for i in picks]


def pooled_descriptor(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """A fixed-size summary of a motion: per-dimension mean and std over time, normalised."""
  z = (np.asarray(features, np.float64) - mean) / std
  return np.concatenate([z.mean(0), z.std(0)])


class MotionRetrievalM2T:
  """Motion-to-text by lookup: a caption of the training motion nearest by pooled features."""

  def __init__(self, data: formats.MotionDataset, split: str = "train"):
    entries = _entries(data, split)
    clips = {e.motion_id: data.features(e.motion_id) for e in entries}
    every = np.concatenate(list(clips.values()))
    self.mean, self.std = every.mean(0), every.std(0) + 1e-6
    self.captions = [e.captions[0].text for e in entries]
    self.matrix = np.stack([self._describe(clips[e.motion_id][e.start:e.end]) for e in entries])

  def _describe(self, features: np.ndarray) -> np.ndarray:
    return pooled_descriptor(features, self.mean, self.std)

  def motion_to_text(self, motions: Sequence[np.ndarray]) -> list[str]:
    queries = np.stack([self._describe(m) for m in motions])
    distances = ((queries[:, None, :] - self.matrix[None]) ** 2).sum(-1)
    return [self.captions[int(i)] for i in distances.argmin(1)]


class HoldLastPose:
  """Prediction: the shown prefix, then its last frame repeated to the motion's length."""

  def __init__(self, frames_per_token: int):
    self.frames_per_token = frames_per_token

  def predict(self, motions: Sequence[np.ndarray], seed: int = 0):
    del seed
    out = []
    for motion in motions:
      codes = len(motion) // self.frames_per_token
      shown = max(motion_span.split_point(codes, motion_span.PREDICTION_RATIO), 1)
      prefix = motion[:shown * self.frames_per_token]
      hold = np.repeat(prefix[-1:], codes * self.frames_per_token - len(prefix), axis=0)
      out.append((np.concatenate([prefix, hold]), None))
    return out


class LinearInbetween:
  """In-between: kept head and tail, the gap a straight line from the head's last frame to the
  tail's first."""

  def __init__(self, frames_per_token: int):
    self.frames_per_token = frames_per_token

  def inbetween(self, motions: Sequence[np.ndarray], seed: int = 0):
    del seed
    unit, out = self.frames_per_token, []
    for motion in motions:
      codes = len(motion) // unit
      head, tail = motion_span.gap(codes)
      head, tail = max(head, 1) * unit, tail * unit
      result = np.array(motion[:codes * unit], np.float64)
      a, b = result[head - 1], result[tail] if tail < len(result) else result[head - 1]
      steps = np.arange(1, tail - head + 1)[:, None] / (tail - head + 1)
      result[head:tail] = a + steps * (b - a)
      out.append((result.astype(motion.dtype), None))
    return out


def _entries(data: formats.MotionDataset, split: str) -> list[formats.Entry]:
  listing = data.entries(split, on_error="skip")
  if not listing.entries:
    raise formats.MotionDataError(data.root, f"no {split} entry for the baselines "
                                  f"({listing.summary()})")
  return listing.entries


def for_task(task: str, data_dir: str, skeleton: str, frames_per_token: int,
             split: str = "train") -> dict[str, object]:
  """{row name: system} of the baselines of `task`, built from the `split` of `data_dir`."""
  if task in ("pred", "inbetween"):
    return {"pred": {"hold last pose": HoldLastPose(frames_per_token)},
            "inbetween": {"linear interpolation": LinearInbetween(frames_per_token)}}[task]
  data = formats.MotionDataset(data_dir, skeleton)
  if task == "t2m":
    return {"caption retrieval": CaptionRetrievalT2M(CaptionRetriever(data, split)),
            "random motion": RandomMotionT2M(data, split)}
  if task == "m2t":
    return {"motion retrieval": MotionRetrievalM2T(data, split)}
  return {}
