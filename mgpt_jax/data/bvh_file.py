"""The BVH file format: parsing any BVH and forward kinematics to joint positions.

    bvh = read_bvh("clip.bvh")         # hierarchy + channels + frames, any rig
    positions = bvh_to_joints(bvh)     # (F, J, 3) in file order and file units

Writing our own skeleton lives in inference/bvh.py; mapping a foreign rig onto
ours in data/bvh_import.py.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy.spatial.transform import Rotation

_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclasses.dataclass
class Bvh:
  names: tuple[str, ...]
  parents: np.ndarray  # (J,) index of each joint's parent in file order; -1 for the root
  offsets: np.ndarray  # (J, 3)
  channels: tuple[tuple[str, ...], ...]
  frames: np.ndarray  # (F, sum of channel counts)
  frame_time: float


def read_bvh(path: str | os.PathLike) -> Bvh:
  """Parses a BVH file (any channel order; End Sites are skipped)."""
  with open(path, encoding="utf-8") as f:
    tokens = f.read().split()
  pos = 0

  def take(expected: str | None = None) -> str:
    nonlocal pos
    if pos >= len(tokens):
      raise ValueError(f"{path}: file ends early" + (f", expected {expected!r}" if expected else ""))
    token = tokens[pos]
    pos += 1
    if expected is not None and token != expected:
      raise ValueError(f"{path}: expected {expected!r}, found {token!r} (token {pos})")
    return token

  def number(what: str) -> float:
    token = take()
    try:
      return float(token)
    except ValueError:
      raise ValueError(f"{path}: {what} should be a number, found {token!r}") from None

  names, parents, offsets, channels = [], [], [], []
  stack = []  # the open joints, innermost last

  def open_joint(parent: int) -> None:
    names.append(take())
    parents.append(parent)
    take("{")
    stack.append(len(names) - 1)

  take("HIERARCHY")
  take("ROOT")
  open_joint(-1)
  while stack:
    token = take()
    if token == "OFFSET":
      offsets.append([number("OFFSET") for _ in range(3)])
    elif token == "CHANNELS":
      count = int(number("channel count"))
      channels.append(tuple(take() for _ in range(count)))
    elif token == "JOINT":
      open_joint(stack[-1])
    elif token == "End":  # an End Site: an offset without a joint; nothing to keep
      for expected in ("Site", "{", "OFFSET"):
        take(expected)
      for _ in range(3):
        number("End Site OFFSET")
      take("}")
    elif token == "}":
      stack.pop()
    else:
      raise ValueError(f"{path}: unexpected {token!r} in the HIERARCHY (token {pos})")
  if len(offsets) != len(names) or len(channels) != len(names):
    raise ValueError(f"{path}: every joint needs one OFFSET and one CHANNELS line")
  for expected in ("MOTION", "Frames:"):
    take(expected)
  count = int(number("Frames:"))
  for expected in ("Frame", "Time:"):
    take(expected)
  frame_time = number("Frame Time:")
  width = sum(len(c) for c in channels)
  values = tokens[pos:]
  if len(values) != count * width:
    raise ValueError(f"{path}: {len(values)} motion values, expected {count} frames x {width} channels")
  try:
    frames = np.asarray(values, np.float64).reshape(count, width)
  except ValueError as error:
    raise ValueError(f"{path}: MOTION values should be numbers ({error})") from None
  return Bvh(tuple(names), np.array(parents), np.asarray(offsets, np.float64), tuple(channels),
             frames, frame_time)


def bvh_to_joints(bvh: Bvh, order: tuple[str, ...] | None = None) -> np.ndarray:
  """Forward kinematics: joint positions (F, J, 3), in file order or in `order` (names)."""
  positions = np.zeros((len(bvh.frames), len(bvh.names), 3))
  rotations = np.zeros((len(bvh.frames), len(bvh.names), 3, 3))
  column = 0
  for j, (parent, offset, names) in enumerate(zip(bvh.parents, bvh.offsets, bvh.channels)):
    local = np.tile(np.eye(3), (len(bvh.frames), 1, 1))
    translation = np.tile(offset, (len(bvh.frames), 1))
    for name in names:  # channels compose left to right: R = R_first @ R_second @ ...
      values = bvh.frames[:, column]
      column += 1
      axis, kind = _AXES.get(name[:1].upper()), name[1:].lower()
      if axis is None or kind not in ("position", "rotation"):
        raise ValueError(f"unknown BVH channel {name!r} of joint {bvh.names[j]!r}: expected "
                         "X/Y/Z followed by position or rotation")
      if kind == "position":
        translation[:, axis] += values
      else:
        local = local @ Rotation.from_euler("xyz"[axis], values[:, None], degrees=True).as_matrix()
    if parent < 0:
      positions[:, j], rotations[:, j] = translation, local
    else:
      positions[:, j] = positions[:, parent] + np.einsum("tab,tb->ta", rotations[:, parent], translation)
      rotations[:, j] = rotations[:, parent] @ local
  if order is None:
    return positions
  missing = [name for name in order if name not in bvh.names]
  if missing:
    raise ValueError(f"BVH has no joints named {missing}; it has {list(bvh.names)}")
  return positions[:, [bvh.names.index(name) for name in order]]
