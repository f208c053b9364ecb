"""Readers for the HumanML3D / KIT-ML on-disk layout.

    <root>/new_joint_vecs/<id>.npy   (T, 263) or (T, 251) features
    <root>/new_joints/<id>.npy       (T, J, 3) joint positions
    <root>/texts/<id>.txt            caption#word/POS word/POS ...#start#end   (seconds)
    <root>/{train,val,test,train_val,all}.txt   one id per line
    <root>/Mean.npy, Std.npy

A text line whose start/end are both 0 (or NaN) describes the whole clip; any
other line describes the sub-clip motion[int(start*fps):int(end*fps)], which
becomes an entry of its own. The reference loaders hard-code 20 fps for that
slice, also for KIT at 12.5 fps; we use the dataset's own frame rate.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from mgpt_jax.data.skeletons import Skeleton, get_skeleton

FEATURES_DIR = "new_joint_vecs"
JOINTS_DIR = "new_joints"
TEXTS_DIR = "texts"
TOKENS_DIR = "TOKENS"  # stage-1 codes per entry, (1, L) int32, as the reference's loader reads
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validation": "val", "valid": "val"}
MAX_EXCLUSIVE_LEN = 200  # clips are kept when min_motion_len <= T < 200


class MotionDataError(ValueError):
  """A data file that is missing, unreadable or not in the expected format."""

  def __init__(self, path, message: str, line: int | None = None):
    self.path = os.fspath(path)
    self.line = line
    self.reason = message
    where = f"{self.path}:{line}" if line is not None else self.path
    super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------- captions


@dataclasses.dataclass(frozen=True)
class Caption:
  text: str
  tokens: tuple[str, ...]  # "word/POS"
  start: float = 0.0  # seconds; 0/0 means the whole clip
  end: float = 0.0

  @property
  def whole_clip(self) -> bool:
    return self.start == 0.0 and self.end == 0.0

  @property
  def words(self) -> tuple[str, ...]:
    return tuple(t.rsplit("/", 1)[0] for t in self.tokens)

  @property
  def pos(self) -> tuple[str, ...]:
    return tuple(t.rsplit("/", 1)[1] for t in self.tokens)

  def to_line(self) -> str:
    return f"{self.text}#{' '.join(self.tokens)}#{self.start}#{self.end}"


def _seconds(value: str, path, lineno: int, what: str) -> float:
  try:
    seconds = float(value)
  except ValueError:
    raise MotionDataError(path, f"{what} time {value!r} is not a number", lineno) from None
  if math.isnan(seconds):
    return 0.0  # the released texts use `nan` for "from the start"
  if seconds < 0 or math.isinf(seconds):
    raise MotionDataError(path, f"{what} time {value!r} must be a finite number >= 0", lineno)
  return seconds


def parse_caption_line(line: str, path="<string>", lineno: int = 1) -> Caption:
  """Parses `caption#word/POS ...#start#end`; errors name the file and line."""
  fields = line.rstrip("\r\n").split("#")
  if len(fields) != 4:
    raise MotionDataError(
        path, f"expected 4 '#'-separated fields (caption#tokens#start#end), got {len(fields)}",
        lineno)
  text, tokens, start, end = fields
  text = text.strip()
  if not text:
    raise MotionDataError(path, "empty caption", lineno)
  token_list = tuple(tokens.split())
  for token in token_list:
    word, slash, pos = token.rpartition("/")
    if not slash or not word or not pos:
      raise MotionDataError(path, f"token {token!r} is not of the form word/POS", lineno)
  start_s = _seconds(start, path, lineno, "start")
  end_s = _seconds(end, path, lineno, "end")
  if (start_s or end_s) and end_s <= start_s:
    raise MotionDataError(path, f"end {end_s} s is not after start {start_s} s", lineno)
  return Caption(text, token_list, start_s, end_s)


def caption_lines(path) -> list[str]:
  """The lines of a texts/<id>.txt file (trailing blank lines dropped); checks UTF-8."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise MotionDataError(path, f"cannot read caption file: {e.strerror}") from None
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise MotionDataError(path, f"not UTF-8 text (byte {raw[e.start]:#x} at offset {e.start})",
                          line) from None
  lines = text.rstrip().splitlines()
  if not lines:
    raise MotionDataError(path, "caption file is empty")
  return lines


def read_captions(path) -> list[Caption]:
  """All caption lines of one texts/<id>.txt file; the first bad line raises."""
  return [parse_caption_line(line, path, i + 1) for i, line in enumerate(caption_lines(path))]


# --------------------------------------------------------------------------- arrays


def dataset_captions(data_dir: str, split: str | None = None):
  """(caption texts, [(path, reason) of skipped files]) of a dataset directory."""
  texts_dir = os.path.join(data_dir, TEXTS_DIR)
  if not os.path.isdir(texts_dir):
    raise MotionDataError(texts_dir, "caption directory not found")
  if split:
    ids = read_split(data_dir, split)
    paths = [os.path.join(texts_dir, f"{motion_id}.txt") for motion_id in ids]
  else:
    paths = sorted(glob.glob(os.path.join(texts_dir, "*.txt")))
  texts, skipped = [], []
  for path in paths:
    try:
      texts.extend(caption.text for caption in read_captions(path))
    except MotionDataError as e:
      skipped.append((path, str(e)))
  return texts, skipped


_NPY_MAGIC = b"\x93NUMPY"


def load_npy(path, header_only: bool = False) -> np.ndarray:
  """np.load without pickles, with an error that names the file.

  header_only: a read-only memory map, so only the header is read (shape and dtype).
  """
  try:
    with open(path, "rb") as f:
      magic = f.read(len(_NPY_MAGIC))
      if magic != _NPY_MAGIC:
        kind = "it is empty" if not magic else f"it starts with {magic!r}, not the .npy magic"
        raise MotionDataError(path, f"not a readable .npy file: {kind} (expected an array "
                              "written by np.save)")
      if not header_only:
        f.seek(0)
        array = np.load(f, allow_pickle=False)
    if header_only:
      array = np.load(path, mmap_mode="r", allow_pickle=False)
  except FileNotFoundError:
    raise MotionDataError(path, "file not found") from None
  except IsADirectoryError:
    raise MotionDataError(path, "is a directory; expected a .npy file") from None
  except (ValueError, OSError, EOFError) as e:
    if isinstance(e, MotionDataError):
      raise
    pickled = "pickle" in str(e) or "Object arrays" in str(e)
    reason = ("an array of Python objects, which is never loaded (no pickles)" if pickled
              else f"truncated or corrupt ({e})")
    raise MotionDataError(path, f"not a readable .npy file: {reason}") from None
  if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.floating)
                                               or np.issubdtype(array.dtype, np.integer)):
    raise MotionDataError(path, f"dtype {array.dtype}: expected real numbers (float or int)")
  return array


def _first_bad_frame(array: np.ndarray) -> int | None:
  bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
  return int(np.argmax(bad)) if bad.any() else None


def load_features(path, dim: int | None = None) -> np.ndarray:
  """A (T, D) float32 feature file, checked for shape and NaN/Inf."""
  array = load_npy(path)
  if array.ndim != 2:
    raise MotionDataError(path, f"expected features of shape (T, D), got shape {array.shape}")
  if dim is not None and array.shape[1] != dim:
    hint = {263: " (a HumanML3D file?)", 251: " (a KIT-ML file?)"}.get(array.shape[1], "")
    raise MotionDataError(path, f"has {array.shape[1]}-d features{hint}; expected {dim}-d")
  if not len(array):
    raise MotionDataError(path, f"empty clip: shape {array.shape}, expected at least one frame")
  frame = _first_bad_frame(array)
  if frame is not None:
    raise MotionDataError(path, f"NaN or Inf values, first at frame {frame}")
  return array.astype(np.float32)


def load_joints(path, num_joints: int | None = None) -> np.ndarray:
  """A (T, J, 3) joint file, checked for shape and NaN/Inf."""
  array = load_npy(path)
  if array.ndim != 3 or array.shape[2] != 3:
    raise MotionDataError(path, f"expected joints of shape (T, J, 3), got shape {array.shape}")
  if num_joints is not None and array.shape[1] != num_joints:
    raise MotionDataError(path, f"has {array.shape[1]} joints; expected {num_joints}")
  if not len(array):
    raise MotionDataError(path, f"empty clip: shape {array.shape}, expected at least one frame")
  frame = _first_bad_frame(array)
  if frame is not None:
    raise MotionDataError(path, f"NaN or Inf values, first at frame {frame}")
  return array


def read_split(root, split: str) -> list[str]:
  """Motion ids of a split file (train/val/test/train_val/all)."""
  split = _SPLIT_ALIASES.get(split, split)
  path = os.path.join(root, f"{split}.txt")
  try:
    with open(path, encoding="utf-8") as f:
      return [line.strip() for line in f if line.strip()]
  except FileNotFoundError:
    raise MotionDataError(path, f"split file for {split!r} not found") from None
  except UnicodeDecodeError:
    raise MotionDataError(path, "split file is not UTF-8 text") from None


# --------------------------------------------------------------------------- entries


@dataclasses.dataclass(frozen=True)
class Entry:
  """One training/evaluation item: a clip or a captioned sub-clip of it."""
  name: str  # the id for whole clips, "<id>@<start>-<end>" (frames) for sub-clips
  motion_id: str
  start: int  # frame range into the clip's features
  end: int
  captions: tuple[Caption, ...]

  @property
  def length(self) -> int:
    return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Skipped:
  path: str
  reason: str

  def __str__(self):
    return f"{self.path}: {self.reason}"


@dataclasses.dataclass
class EntryList:
  entries: list[Entry]
  skipped: list[Skipped]  # bad files (only when reading with on_error="skip")
  filtered: int  # clips and sub-clips outside the length range

  def summary(self) -> str:
    return (f"{len(self.entries)} entries, {self.filtered} filtered by length, "
            f"{len(self.skipped)} skipped for errors")


class MotionDataset:
  """A dataset root in the HumanML3D/KIT-ML layout."""

  def __init__(self, root, dataset: str | Skeleton = "humanml3d"):
    self.root = os.fspath(root)
    self.skeleton = get_skeleton(dataset) if isinstance(dataset, str) else dataset
    if not os.path.isdir(self.root):
      raise MotionDataError(self.root, "dataset directory not found")

  def features_path(self, motion_id: str) -> str:
    return os.path.join(self.root, FEATURES_DIR, motion_id + ".npy")

  def joints_path(self, motion_id: str) -> str:
    return os.path.join(self.root, JOINTS_DIR, motion_id + ".npy")

  def text_path(self, motion_id: str) -> str:
    return os.path.join(self.root, TEXTS_DIR, motion_id + ".txt")

  def split_ids(self, split: str) -> list[str]:
    return read_split(self.root, split)

  def features(self, motion_id: str) -> np.ndarray:
    return load_features(self.features_path(motion_id), self.skeleton.feature_dim)

  def num_frames(self, motion_id: str) -> int:
    """A clip's frame count from its file header alone (values are not checked)."""
    path = self.features_path(motion_id)
    shape = load_npy(path, header_only=True).shape
    if len(shape) != 2 or shape[1] != self.skeleton.feature_dim:
      raise MotionDataError(path, f"expected features of shape (T, {self.skeleton.feature_dim}), "
                            f"got shape {shape}")
    return shape[0]

  def captions(self, motion_id: str) -> list[Caption]:
    return read_captions(self.text_path(motion_id))

  def motion(self, entry: Entry) -> np.ndarray:
    return self.features(entry.motion_id)[entry.start:entry.end]

  def in_range(self, length: int) -> bool:
    return self.skeleton.min_motion_len <= length < MAX_EXCLUSIVE_LEN

  def clips(self, split: str) -> tuple[list[tuple[str, np.ndarray]], list[Skipped]]:
    """(id, features) of every readable clip of a split in the length range, and the skips."""
    clips, skipped = [], []
    for motion_id in self.split_ids(split):
      try:
        motion = self.features(motion_id)
      except MotionDataError as e:
        skipped.append(Skipped(e.path, e.reason))
        continue
      if self.in_range(len(motion)):
        clips.append((motion_id, motion))
    return clips, skipped

  def clip_entries(self, motion_id: str, check_features: bool = True) -> tuple[list[Entry], int]:
    """Entries of one clip and how many were filtered by length; raises MotionDataError.

    check_features=False reads only the feature file's header (readers of TOKENS/ need no more).
    """
    num_frames = (len(self.features(motion_id)) if check_features
                  else self.num_frames(motion_id))
    captions = self.captions(motion_id)
    if not self.in_range(num_frames):
      return [], 1
    whole = tuple(c for c in captions if c.whole_clip)
    entries = [Entry(motion_id, motion_id, 0, num_frames, whole)] if whole else []
    filtered = 0
    by_range: dict[tuple[int, int], list[Caption]] = {}
    for caption in captions:
      if not caption.whole_clip:
        start = int(caption.start * self.skeleton.fps)
        end = min(int(caption.end * self.skeleton.fps), num_frames)
        by_range.setdefault((start, end), []).append(caption)
    for (start, end), group in by_range.items():
      if self.in_range(end - start):
        entries.append(Entry(f"{motion_id}@{start}-{end}", motion_id, start, end, tuple(group)))
      else:
        filtered += 1
    return entries, filtered

  def entries(self, split: str, on_error: str = "raise",
              progress: Callable[[Sequence[str]], Sequence[str]] = lambda ids: ids,
              check_features: bool = True) -> EntryList:
    """All entries of a split, sorted by length as the reference loaders do.

    on_error="skip" counts and reports bad clips instead of raising.
    """
    if on_error not in ("raise", "skip"):
      raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    entries, skipped, filtered = [], [], 0
    for motion_id in progress(self.split_ids(split)):
      try:
        clip, n_filtered = self.clip_entries(motion_id, check_features)
      except MotionDataError as e:
        if on_error == "raise":
          raise
        skipped.append(Skipped(str(e.path) + (f":{e.line}" if e.line else ""), e.reason))
        continue
      entries.extend(clip)
      filtered += n_filtered
    entries.sort(key=lambda e: (e.length, e.name))
    return EntryList(entries, skipped, filtered)
