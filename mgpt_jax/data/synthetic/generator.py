"""Synthetic motions (1-3 actions chained with short blends) and the dataset writer.

Motion i of a seed draws everything from `np.random.default_rng([seed, i])`,
so it does not depend on how many workers write the dataset or in which order.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
import time
from typing import Sequence, Union

import numpy as np
from scipy.ndimage import gaussian_filter1d
from tqdm import tqdm

from mgpt_jax import atomic_io
from mgpt_jax.data import features, formats, stats
from mgpt_jax.data.formats import Caption
from mgpt_jax.data.skeletons import Skeleton, get_skeleton
from mgpt_jax.data.synthetic import actions as act
from mgpt_jax.data.synthetic import captions as cap
from mgpt_jax.data.synthetic.rig import Rig, rig_for

GENERATOR_VERSION = "1.0"
MAX_SEQUENCE = 3
_SEQUENCE_LENGTHS = ((1, 2, 3), (0.35, 0.4, 0.25))
_ATTEMPTS = 60
_NOISE_DEGREES = 1.2  # slow per-joint wobble: no two repetitions are identical
_MIN_MARGIN = 4  # feature rows above the dataset's minimum length

ActionRequest = Union[str, tuple[str, dict]]


@dataclasses.dataclass(frozen=True)
class ActionInstance:
  """Ground truth of one action: its parameters and its rows [start, end) of the feature file."""
  name: str
  params: dict
  start: int
  end: int

  def to_json(self) -> dict:
    return {"name": self.name, "params": dict(self.params), "start": self.start, "end": self.end}


@dataclasses.dataclass
class SyntheticMotion:
  joints: np.ndarray  # (T + 1, J, 3) float64: T + 1 joint frames give T feature rows
  actions: list[ActionInstance]
  captions: list[Caption]
  skeleton: Skeleton

  @property
  def num_frames(self) -> int:
    """Feature rows this motion gives."""
    return len(self.joints) - 1


# --------------------------------------------------------------------------- sequences


def _requested(requests: Sequence[ActionRequest], rng) -> list[tuple[str, dict]]:
  if not 1 <= len(requests) <= MAX_SEQUENCE:
    raise ValueError(f"a motion has 1 to {MAX_SEQUENCE} actions, {len(requests)} requested")
  out = []
  for item in requests:
    name, given = (item, {}) if isinstance(item, str) else item
    out.append((name, act.sample_params(name, rng, given)))
  return out


def _random_sequence(rng, count: int) -> list[tuple[str, dict]]:
  weights = np.array([act.ACTIONS[n].weight for n in act.ACTION_NAMES])
  names: list[str] = []
  while len(names) < count:
    name = act.ACTION_NAMES[int(rng.choice(len(weights), p=weights / weights.sum()))]
    if not names or name != names[-1]:  # "walks, then walks" reads like one action
      names.append(name)
  return [(name, act.sample_params(name, rng)) for name in names]


def _settle(sequence: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
  """Only the last action may leave the figure seated: a blend cannot stand it up."""
  last = len(sequence) - 1
  return [(n, dict(p, stand_up=True)) if n == "sit_down" and k < last else (n, p)
          for k, (n, p) in enumerate(sequence)]


# --------------------------------------------------------------------------- timeline


def _rates(clip: act.Clip) -> dict:
  """Per-frame increments of a clip (zero at its first frame)."""
  def diff(x):
    return np.diff(x, axis=0, prepend=x[:1])
  return {"rot": clip.rot, "vel": diff(clip.disp), "turn": diff(clip.yaw), "lift": clip.lift,
          "anchor": clip.anchor}


def _blend(a: dict, b: dict, frames: int) -> dict:
  """Eases the pose from the last frame of `a` to the first frame of `b`.

  The root neither moves nor turns during a blend, so an action's distance and
  angle are exactly those its own frames carry (a 90 degree turn stays 90).
  """
  w = act.smoothstep((np.arange(frames) + 1.0) / (frames + 1.0))
  out = {}
  for key in a:
    x0, x1 = a[key][-1], b[key][0]
    if key in ("vel", "turn"):
      x0, x1 = np.zeros_like(x0), np.zeros_like(x1)
    out[key] = x0 + (x1 - x0) * w.reshape((frames,) + (1,) * np.ndim(x0))
  return out


def _hold(clip: act.Clip, frames: int) -> act.Clip:
  """Stands still in the clip's last pose (a figure that sat down stays seated)."""
  return act.Clip(np.repeat(clip.rot[-1:], frames, axis=0), np.zeros((frames, 2)), np.zeros(frames),
                  np.full(frames, clip.lift[-1]), np.full((frames, 2), 0.5))


def _chain(clips: list[act.Clip], blends: list[int]) -> tuple[dict, list[int]]:
  pieces, starts, frame = [], [], 0
  for k, clip in enumerate(clips):
    rates = _rates(clip)
    if pieces:
      pieces.append(_blend(pieces[-1], rates, blends[k - 1]))
      frame += blends[k - 1]
    starts.append(frame)
    pieces.append(rates)
    frame += len(clip)
  return {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}, starts


def _liven(rot: np.ndarray, rig: Rig, fps: float, rng) -> np.ndarray:
  """A per-motion posture (small offsets, bent elbows) and a slow wobble on every joint.

  Twists about the vertical are kept small on the torso and legs: hips and
  shoulders define the facing, which the captions' directions refer to.
  """
  arms = [i for i, n in enumerate(rig.names) if n[2:] in ("collar", "shoulder", "elbow")]
  trunk = [0] + list(rig.spine) + [i for i, n in enumerate(rig.names) if n in ("neck", "head")]
  style = np.zeros(rot.shape[1:])
  style[arms] = rng.normal(0.0, np.radians(2.5), (len(arms), 3))
  style[trunk] = rng.normal(0.0, np.radians(1.2), (len(trunk), 3))
  for side in ("l", "r"):
    style[rig[f"{side}_elbow"]] += act.SWING * np.radians(rng.uniform(3.0, 15.0))
  sigma = 0.35 * fps
  noise = gaussian_filter1d(rng.standard_normal(rot.shape), sigma, axis=0, mode="nearest")
  noise *= np.sqrt(2.0 * np.sqrt(np.pi) * sigma) * np.radians(_NOISE_DEGREES)  # unit std first
  noise[:, list(rig.legs) + trunk] *= 0.4  # feet should not slide, the spine adds up its joints
  style[trunk, 1] *= 0.3
  noise[:, trunk, 1] *= 0.3
  return rot + style + noise


def _place(track: dict, rig: Rig) -> np.ndarray:
  """World joints: integrate yaw and root motion, keep anchored feet still, feet on the floor."""
  yaw, vel = np.cumsum(track["turn"]), track["vel"]
  rel = rig.fk(track["rot"], yaw)
  c, s = np.cos(yaw), np.sin(yaw)  # body (left, forward) -> world (x, z)
  step = np.stack([vel[:, 0] * c + vel[:, 1] * s, -vel[:, 0] * s + vel[:, 1] * c], axis=-1)
  ankles = rel[:, [rig["l_ankle"], rig["r_ankle"]]][..., [0, 2]]
  slide = np.diff(ankles, axis=0, prepend=ankles[:1])
  step -= (track["anchor"][..., None] * slide).sum(axis=1)
  xz = np.cumsum(step, axis=0)
  height = -rel[:, list(rig.feet), 1].min(axis=1) + track["lift"]
  return rel + np.stack([xz[:, 0], height, xz[:, 1]], axis=-1)[:, None, :]


# --------------------------------------------------------------------------- captions


def _seconds(frame: int, fps: float) -> float:
  """A short decimal time that the loaders' int(seconds * fps) maps back to `frame`."""
  for digits in range(2, 8):
    value = round(frame / fps, digits)
    if int(value * fps) == frame:
      return value
  return round((frame + 0.25) / fps, 6)


def _captions(sequence, instances, skeleton: Skeleton, rng) -> list[Caption]:
  lines = cap.describe(sequence, rng, int(rng.integers(3, 6)))
  if len(sequence) > 1:  # sub-clip lines, as the released texts have for some clips
    for (name, params), inst in zip(sequence, instances):
      if inst.end - inst.start >= skeleton.min_motion_len:
        start, end = _seconds(inst.start, skeleton.fps), _seconds(inst.end, skeleton.fps)
        lines += [dataclasses.replace(c, start=start, end=end)
                  for c in cap.describe([(name, params)], rng, int(rng.integers(1, 3)))]
  return lines


# --------------------------------------------------------------------------- motion


def generate_motion(index: int, seed: int, skeleton: Skeleton | str,
                    actions: Sequence[ActionRequest] | None = None) -> SyntheticMotion:
  """Motion `index` of dataset `seed`.

  actions: force the sequence, e.g. [("turn", {"side": "left", "angle": 90}), "jump"];
  parameters left out are drawn at random.
  """
  skeleton = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
  rig = rig_for(skeleton)
  rng = np.random.default_rng([seed, index])
  ctx = act.Context(rig, skeleton.fps, rng)
  max_frames = skeleton.max_motion_len + 1
  min_frames = skeleton.min_motion_len + _MIN_MARGIN + 1

  def frames(lo: float, hi: float) -> int:
    return max(2, int(round(rng.uniform(lo, hi) * skeleton.fps)))

  lengths, p = _SEQUENCE_LENGTHS
  count = lengths[int(rng.choice(len(lengths), p=p))]
  for attempt in range(_ATTEMPTS):
    # Too long: redraw the actions but keep their number (fewer only after many tries),
    # so that 3-action motions are not crowded out by the length limit.
    sequence = _settle(_requested(actions, rng) if actions is not None else
                       _random_sequence(rng, max(1, count - attempt // 20)))
    clips = [act.idle({"seconds": rng.uniform(0.2, 0.6)}, ctx)]
    clips += [act.build(name, params, ctx) for name, params in sequence]
    blends = [frames(0.25, 0.45) for _ in clips]
    used = sum(len(c) for c in clips) + sum(blends)
    tail = max(frames(0.25, 0.7), min_frames - used)
    if used + tail <= max_frames:
      break
  else:
    raise ValueError(f"actions {actions} do not fit in {skeleton.max_motion_len} frames")
  clips.append(_hold(clips[-1], tail))

  track, starts = _chain(clips, blends)
  track["rot"] = _liven(track["rot"], rig, skeleton.fps, rng)
  joints = _place(track, rig)
  instances = [ActionInstance(name, params, start, start + len(clip))
               for (name, params), start, clip in zip(sequence, starts[1:], clips[1:])]
  return SyntheticMotion(joints, instances, _captions(sequence, instances, skeleton, rng),
                         skeleton)


# --------------------------------------------------------------------------- dataset

SIDECAR = "synthetic_actions.jsonl"
SPLIT_FRACTIONS = {"val": 0.05, "test": 0.15}  # the rest (about 80 %) is train
_SPLIT_STREAM = (0x53504C54, 0x53454544)  # never equal to a motion's [seed, index] stream


@dataclasses.dataclass(frozen=True)
class SynthReport:
  out_dir: str
  num_motions: int
  num_frames: int  # feature rows over all motions
  seconds: float  # wall time
  dataset: str


def motion_id(index: int) -> str:
  return f"{index:06d}"


def split_ids(num_motions: int, seed: int) -> dict[str, list[str]]:
  """train / val / test ids, shuffled deterministically per seed; none empty from 3 motions on."""
  order = [motion_id(int(i)) for i in
           np.random.default_rng([seed, *_SPLIT_STREAM]).permutation(num_motions)]
  sizes = {k: int(round(f * num_motions)) for k, f in SPLIT_FRACTIONS.items()}
  if num_motions >= 3:
    sizes = {k: max(1, n) for k, n in sizes.items()}
  elif num_motions == 2:
    sizes = {"val": 0, "test": 1}
  test, val = order[:sizes["test"]], order[sizes["test"]:sizes["test"] + sizes["val"]]
  train = order[sizes["test"] + sizes["val"]:]
  return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def _write_motion(task) -> dict:
  """Writes one motion's three files; returns its sidecar record and feature moments."""
  out_dir, index, seed, dataset = task
  skeleton = get_skeleton(dataset)
  motion = generate_motion(index, seed, skeleton)
  name = motion_id(index)
  feats = features.joints_to_features(motion.joints, skeleton).astype(np.float32)
  # As HumanML3D does: new_joints are recovered from the stored features.
  joints = features.features_to_joints(feats).astype(np.float32)
  atomic_io.save_npy(os.path.join(out_dir, formats.FEATURES_DIR, name + ".npy"), feats)
  atomic_io.save_npy(os.path.join(out_dir, formats.JOINTS_DIR, name + ".npy"), joints)
  atomic_io.write_text(os.path.join(out_dir, formats.TEXTS_DIR, name + ".txt"),
                       "".join(c.to_line() + "\n" for c in motion.captions))
  rows = feats.astype(np.float64)
  mean = rows.mean(axis=0)
  record = {"id": name, "actions": [a.to_json() for a in motion.actions],
            "num_frames": len(feats)}
  return {"index": index, "record": record, "count": len(rows), "mean": mean,
          "m2": ((rows - mean)**2).sum(axis=0)}


def _run(tasks: list, workers: int, progress: bool, desc: str) -> list[dict]:
  results = [None] * len(tasks)
  with tqdm(total=len(tasks), desc=desc, unit="motion", disable=not progress) as bar:
    # Forking a process that runs jax's threads can deadlock, and spawn re-runs an
    # unguarded __main__ script in every worker: with jax loaded, stay in-process.
    if (workers <= 1 or len(tasks) <= 1 or "jax" in sys.modules
        or "fork" not in multiprocessing.get_all_start_methods()):
      outputs = map(_write_motion, tasks)
      pool = None
    else:
      pool = multiprocessing.get_context("fork").Pool(workers)
      chunk = max(1, min(32, len(tasks) // (8 * workers)))
      outputs = pool.imap_unordered(_write_motion, tasks, chunksize=chunk)
    try:
      for result in outputs:
        results[result["index"]] = result
        bar.update()
    finally:
      if pool is not None:
        pool.terminate()
        pool.join()
  return results


def _train_normalizers(results: list[dict], train: list[str], num_joints: int):
  """compute_stats over the train rows, from per-motion moments so memory stays flat.

  Moments are merged in id order (deterministic); compute_stats then sees two
  rows, mean -/+ std, which have exactly the train rows' per-dim mean and std.
  """
  count, mean, m2 = 0, 0.0, 0.0
  for name in train:
    r = results[int(name)]
    total = count + r["count"]
    delta = r["mean"] - mean
    mean = mean + delta * (r["count"] / total)
    m2 = m2 + r["m2"] + delta**2 * (count * r["count"] / total)
    count = total
  std = np.sqrt(m2 / count)
  rows = np.stack([mean - std, mean + std])
  return (stats.compute_stats([rows], num_joints, feat_bias=1.0),
          stats.compute_stats([rows], num_joints, feat_bias=stats.META_FEAT_BIAS))


_README_MARK = "generator: mgpt_jax.data.synthetic"


def _readme(skeleton: Skeleton, num_motions: int, seed: int) -> str:
  return ("SYNTHETIC motion dataset: procedurally generated actions, not motion capture.\n"
          f"{_README_MARK} version {GENERATOR_VERSION}\n"
          f"seed: {seed}\ndataset: {skeleton.name} ({skeleton.feature_dim}-d features, "
          f"{skeleton.num_joints} joints, {skeleton.fps:g} fps)\nmotions: {num_motions}\n"
          "layout: new_joint_vecs/, new_joints/, texts/, train/val/test/train_val/all.txt, "
          "Mean.npy/Std.npy (train split), meta/mean.npy/std.npy (train split, feat_bias 25)\n"
          f"ground truth: {SIDECAR}, one JSON object per motion with its actions, their "
          "parameters and [start, end) feature rows\n")


def write_dataset(out_dir: str, num_motions: int, seed: int, dataset: str = "humanml3d",
                  progress: bool = True, workers: int | None = None,
                  overwrite: bool = False) -> SynthReport:
  """Writes `num_motions` synthetic motions in the HumanML3D / KIT-ML layout into `out_dir`.

  Every file is written atomically; split files come last (all.txt the very
  last), so a directory with all.txt is complete. A non-empty `out_dir` that is not a
  synthetic dataset (its ids are real HumanML3D ids) is refused unless `overwrite`.
  """
  if num_motions < 1:
    raise ValueError(f"num_motions must be >= 1, got {num_motions}")
  skeleton = get_skeleton(dataset)
  workers = min(2, os.cpu_count() or 1) if workers is None else workers
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  start = time.perf_counter()
  out_dir = os.fspath(out_dir)
  # README.txt comes first: a write that was interrupted may be resumed.
  atomic_io.check_output_dir(out_dir, overwrite, markers=(SIDECAR, ("README.txt", _README_MARK)))
  # all.txt marks a complete directory: an older one must not vouch for this write.
  if os.path.exists(os.path.join(out_dir, "all.txt")):
    os.remove(os.path.join(out_dir, "all.txt"))
  atomic_io.write_text(os.path.join(out_dir, "README.txt"), _readme(skeleton, num_motions, seed))
  tasks = [(out_dir, i, seed, skeleton.name) for i in range(num_motions)]
  results = _run(tasks, workers, progress, f"synthetic {skeleton.name}")

  atomic_io.write_text(os.path.join(out_dir, SIDECAR),
                       "".join(json.dumps(r["record"]) + "\n" for r in results))
  splits = split_ids(num_motions, seed)
  dataset_stats, meta_stats = _train_normalizers(results, splits["train"], skeleton.num_joints)
  dataset_stats.save(out_dir, "dataset")
  meta_stats.save(os.path.join(out_dir, "meta"), "meta")
  splits["train_val"] = sorted(splits["train"] + splits["val"])
  splits["all"] = [motion_id(i) for i in range(num_motions)]
  for name in ("train", "val", "test", "train_val", "all"):
    atomic_io.write_text(os.path.join(out_dir, f"{name}.txt"),
                         "".join(i + "\n" for i in splits[name]))
  return SynthReport(out_dir, num_motions, sum(r["count"] for r in results),
                     time.perf_counter() - start, skeleton.name)
