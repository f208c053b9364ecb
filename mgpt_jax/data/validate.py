"""Checks a dataset directory in the HumanML3D/KIT-ML layout and reports every problem.

Errors make the data unusable as it is (missing or unreadable files, wrong
dimensions, NaN/Inf, bad caption lines, split ids without files); warnings are
things the loaders cope with (clips outside the length range, which they filter,
and files that no split names).
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Iterable

from mgpt_jax.data import formats
from mgpt_jax.data.skeletons import Skeleton, get_skeleton, skeleton_for_dim
from mgpt_jax.data.stats import Normalizer

REQUIRED_SPLITS = ("train", "val", "test")
OPTIONAL_SPLITS = ("train_val", "all")


@dataclasses.dataclass(frozen=True)
class Problem:
  severity: str  # "error" or "warning"
  path: str
  message: str
  line: int | None = None

  def __str__(self):
    where = f"{self.path}:{self.line}" if self.line is not None else self.path
    return f"{self.severity}: {where}: {self.message}"


@dataclasses.dataclass
class Report:
  root: str
  dataset: str
  clips: int = 0
  frames: int = 0
  captions: int = 0
  problems: list[Problem] = dataclasses.field(default_factory=list)

  @property
  def errors(self) -> list[Problem]:
    return [p for p in self.problems if p.severity == "error"]

  @property
  def warnings(self) -> list[Problem]:
    return [p for p in self.problems if p.severity == "warning"]

  @property
  def ok(self) -> bool:
    return not self.errors

  def summary(self) -> str:
    counts = collections.Counter(p.message.split(":")[0] for p in self.problems)
    lines = [f"{self.root} ({self.dataset}): {self.clips} clips, {self.frames} frames, "
             f"{self.captions} captions; {len(self.errors)} errors, {len(self.warnings)} warnings"]
    lines += [f"  {n} x {kind}" for kind, n in counts.most_common()]
    return "\n".join(lines)

  def error(self, path, message, line=None):
    self.problems.append(Problem("error", os.fspath(path), message, line))

  def warn(self, path, message, line=None):
    self.problems.append(Problem("warning", os.fspath(path), message, line))

  def add(self, e: formats.MotionDataError):
    self.error(e.path, e.reason, e.line)


def detect_dataset(root) -> Skeleton:
  """The skeleton of a directory, from the feature width most of its files have.

  The files of another width are then reported by the clip checks, each by name.
  """
  features_dir = os.path.join(root, formats.FEATURES_DIR)
  widths = collections.Counter()
  for name in sorted(os.listdir(features_dir)) if os.path.isdir(features_dir) else []:
    try:
      shape = formats.load_npy(os.path.join(features_dir, name), header_only=True).shape
      if len(shape) == 2:
        widths[skeleton_for_dim(shape[1]).name] += 1
    except ValueError:  # unreadable, or a width of no dataset: the clip checks name it
      continue
  if not widths:
    raise formats.MotionDataError(features_dir, "no readable feature file to detect the dataset "
                                  "from; pass --dataset")
  return get_skeleton(widths.most_common(1)[0][0])


def _names(directory: str, suffix: str) -> set[str]:
  if not os.path.isdir(directory):
    return set()
  return {n[:-len(suffix)] for n in os.listdir(directory) if n.endswith(suffix)}


def _check_captions(report: Report, path: str) -> None:
  try:
    lines = formats.caption_lines(path)
  except formats.MotionDataError as e:
    report.add(e)
    return
  for i, line in enumerate(lines):
    try:
      formats.parse_caption_line(line, path, i + 1)
      report.captions += 1
    except formats.MotionDataError as e:
      report.add(e)


def _check_clip(report: Report, data: formats.MotionDataset, motion_id: str,
                has_joints: bool) -> None:
  skeleton = data.skeleton
  try:
    features = data.features(motion_id)
  except formats.MotionDataError as e:
    report.add(e)
    return
  report.clips += 1
  report.frames += len(features)
  if len(features) < 2:
    report.error(data.features_path(motion_id), f"too short: {len(features)} frames")
  elif not data.in_range(len(features)):
    report.warn(data.features_path(motion_id),
                f"length outside the loaders' range: {len(features)} frames, expected "
                f"{skeleton.min_motion_len} <= T < {formats.MAX_EXCLUSIVE_LEN}; it will be filtered")
  if has_joints:
    path = data.joints_path(motion_id)
    if not os.path.exists(path):
      report.warn(path, "missing joints file: new_joints/ has no file for this clip")
    else:
      try:
        joints = formats.load_joints(path, skeleton.num_joints)
        if len(joints) != len(features):
          report.error(path, f"frame count mismatch: {len(joints)} joint frames, "
                       f"{len(features)} feature frames")
      except formats.MotionDataError as e:
        report.add(e)


def validate_dataset(root, dataset: str | None = None,
                     progress=lambda items: items) -> Report:
  """Every problem of a dataset directory; `progress` wraps the clip iteration (e.g. tqdm)."""
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise formats.MotionDataError(root, "dataset directory not found")
  skeleton = get_skeleton(dataset) if dataset else detect_dataset(root)
  data = formats.MotionDataset(root, skeleton)
  report = Report(root, skeleton.name)

  split_ids: dict[str, list[str]] = {}
  for split in REQUIRED_SPLITS + OPTIONAL_SPLITS:
    path = os.path.join(root, f"{split}.txt")
    if not os.path.exists(path):
      if split in REQUIRED_SPLITS:
        report.error(path, "missing split file")
      continue
    try:
      split_ids[split] = formats.read_split(root, split)
    except formats.MotionDataError as e:
      report.add(e)
      continue
    if not split_ids[split]:
      report.error(path, "empty split: the file names no motion ids")
  named = set().union(*split_ids.values()) if split_ids else set()

  features = _names(os.path.join(root, formats.FEATURES_DIR), ".npy")
  texts = _names(os.path.join(root, formats.TEXTS_DIR), ".txt")
  has_joints = os.path.isdir(os.path.join(root, formats.JOINTS_DIR))
  for directory in (formats.FEATURES_DIR, formats.TEXTS_DIR):
    if not os.path.isdir(os.path.join(root, directory)):
      report.error(os.path.join(root, directory), "missing directory")

  for split, ids in split_ids.items():
    for motion_id in ids:
      if motion_id not in features:
        report.error(data.features_path(motion_id), f"split id without file: named in {split}.txt")
      if motion_id not in texts:
        report.error(data.text_path(motion_id), f"split id without file: named in {split}.txt")
  for motion_id in sorted(features - named):
    report.warn(data.features_path(motion_id), "extra file: no split names this clip")
  for motion_id in sorted(texts - features):
    report.warn(data.text_path(motion_id), "extra file: caption file without a feature file")

  for motion_id in progress(sorted(features)):
    _check_clip(report, data, motion_id, has_joints)
    if motion_id in texts:
      _check_captions(report, data.text_path(motion_id))

  try:
    Normalizer.from_dir(root, "dataset", skeleton.feature_dim)
  except formats.MotionDataError as e:
    # Stats can be computed later from the train split; broken stats are an error.
    (report.warn if e.reason == "file not found" else report.error)(e.path, e.reason)
  return report


def format_report(report: Report, problems: Iterable[Problem] | None = None) -> str:
  problems = report.problems if problems is None else problems
  return "\n".join([report.summary()] + [str(p) for p in problems])
