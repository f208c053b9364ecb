"""Does a motion do what its caption says? Checks on the synthetic benchmark.

FID and R-precision compare feature distributions; they do not tell whether a
"left turn" turns left. The synthetic dataset's sidecar holds every action's
parameters, so for a caption of ONE action we know its claims (direction,
side, count...) and can measure them on any motion's joints alone:

    items = semantic_items(data_dir, "test")            # single-action prompts
    joints = [features_to_joints(generate(i.caption)) for i in items]
    print(format_table({"generated": score(items, joints, fps, "humanml3d")}))

Conventions (those of the generator and the feature procedure): y is up, the
person's left is +X when facing +Z, a positive yaw turns to the left. Every
length is measured in leg lengths (thigh + shin, read off the joints), so
HumanML3D metres and KIT millimetres work alike. Tolerances are in `TOL`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from mgpt_jax.data import formats
from mgpt_jax.data.skeletons import Skeleton, get_skeleton, skeleton_for_dim, skeleton_for_joints
from mgpt_jax.data.synthetic.actions import ACTION_NAMES
from mgpt_jax.data.synthetic.generator import SIDECAR
from mgpt_jax.data.synthetic.rig import rig_for

SECTORS = ("forward", "forward_left", "left", "backward_left", "backward", "backward_right",
           "right", "forward_right")  # 45-degree sectors, counter-clockwise from forward
TOL = {
    "still": 0.2,  # leg lengths: less net travel of the feet is direction "none"
    "turn": 45.0,  # degrees: below this |yaw| there is no turn; the claimed angle is met within it
    "steps": 0.2,  # steps may be off by max(1, ceil(20 %)): first/last half steps are ambiguous
    "frames": 1,  # sub-clip seconds -> frames may differ from the sidecar by this many rows
}
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- items


@dataclasses.dataclass(frozen=True)
class SemanticItem:
  """One single-action prompt: its caption, what the action was, and the rows it covers."""
  motion_id: str
  caption: str
  action: str
  params: dict
  frames: tuple[int, int]  # [start, end) feature rows of the clip the caption describes

  @property
  def length(self) -> int:
    return self.frames[1] - self.frames[0]


class SemanticItems(list):
  """A list of SemanticItem with `skipped`: reason -> how many captions/actions were left out."""
  skipped: Counter


def _read_sidecar(data_dir: str) -> dict[str, dict]:
  path = os.path.join(data_dir, SIDECAR)
  if not os.path.isfile(path):
    raise formats.MotionDataError(path, "synthetic ground truth not found: semantic checks need "
                                  "a dataset written by mgpt_jax.data.synthetic.write_dataset")
  with open(path, encoding="utf-8") as f:
    lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
  records = {}
  for lineno, line in lines:
    try:
      record = json.loads(line)
      records[record["id"]] = record
    except (ValueError, KeyError, TypeError) as e:
      raise formats.MotionDataError(path, f"expected a JSON object with an 'id': {e}",
                                    lineno) from None
  return records


def _dataset_of(data_dir: str, ids: Sequence[str]) -> Skeleton:
  for motion_id in ids:
    path = os.path.join(data_dir, formats.FEATURES_DIR, motion_id + ".npy")
    if os.path.isfile(path):
      return skeleton_for_dim(formats.load_npy(path, header_only=True).shape[-1])
  raise formats.MotionDataError(os.path.join(data_dir, formats.FEATURES_DIR),
                                "no feature file to tell the dataset from; pass dataset=")


def semantic_items(data_dir: str, split: str = "test", rng=None, dataset: str | None = None,
                   all_captions: bool = False) -> SemanticItems:
  """The single-action prompts of a split of a synthetic dataset.

  A one-action motion gives one whole-clip caption; a multi-action motion gives,
  per action, a sub-clip caption whose [start, end) seconds map (int(s * fps))
  to that action's rows within TOL["frames"]. rng (a Generator or a seed) picks
  which caption; None takes the first. all_captions=True keeps every matching
  line instead. Everything left out is counted in `.skipped` by reason.
  """
  data_dir = os.fspath(data_dir)
  records = _read_sidecar(data_dir)
  ids = formats.read_split(data_dir, split)
  skeleton = get_skeleton(dataset) if dataset else _dataset_of(data_dir, ids)
  rng = rng if isinstance(rng, np.random.Generator) or rng is None else np.random.default_rng(rng)
  items, skipped = SemanticItems(), Counter()

  def take(motion_id, lines, action, frames):
    chosen = lines if all_captions else [
        lines[0] if rng is None else lines[int(rng.integers(len(lines)))]]
    items.extend(SemanticItem(motion_id, c.text, action["name"], dict(action["params"]), frames)
                 for c in chosen)

  for motion_id in ids:
    if motion_id not in records:
      skipped["id not in the sidecar"] += 1
      continue
    record = records[motion_id]
    try:
      captions = formats.read_captions(
          os.path.join(data_dir, formats.TEXTS_DIR, motion_id + ".txt"))
    except formats.MotionDataError as e:
      skipped[f"caption file unreadable ({e.reason})"] += 1
      continue
    actions, num_frames = record["actions"], int(record["num_frames"])
    whole = [c for c in captions if c.whole_clip]
    if len(actions) == 1:
      if whole:
        take(motion_id, whole, actions[0], (0, num_frames))
      else:
        skipped["one-action motion without a whole-clip caption"] += 1
      continue
    skipped["whole-clip caption of a multi-action motion"] += len(whole)
    subs = [c for c in captions if not c.whole_clip]
    unmatched = set(range(len(subs)))
    for action in actions:
      near = [k for k, c in enumerate(subs)
              if abs(int(c.start * skeleton.fps) - action["start"]) <= TOL["frames"]
              and abs(int(c.end * skeleton.fps) - action["end"]) <= TOL["frames"]]
      if near:
        take(motion_id, [subs[k] for k in near], action, (int(action["start"]), int(action["end"])))
        unmatched -= set(near)
      else:
        skipped["action without a sub-clip caption (too short for one)"] += 1
    skipped["sub-clip caption matching no action"] += len(unmatched)
  items.skipped = Counter({k: v for k, v in skipped.items() if v})
  if items.skipped:
    log.info("semantic_items(%s, %s): %d items; skipped %s", data_dir, split, len(items),
             dict(items.skipped))
  return items


def item_joints(data_dir: str, item: SemanticItem) -> np.ndarray:
  """Ground-truth joints (T, J, 3) of the rows an item describes (new_joints/<id>.npy)."""
  joints = formats.load_joints(os.path.join(data_dir, formats.JOINTS_DIR, item.motion_id + ".npy"))
  return joints[item.frames[0]:item.frames[1]].astype(np.float64)


# --------------------------------------------------------------------------- claims


def attributes(action: str, params: Mapping) -> dict:
  """The claims a caption of this action makes, e.g. {"direction": "left", "steps": 4}.

  direction: travel relative to the initial facing ("none" = in place); turn_side
  and angle / turns: yaw; limb: the limb that moves most ("left_arm", "both_arms",
  "right_leg"...); count-like claims name what is counted. Speed is not claimed
  (tempo is relative, it has no joint-level ground truth).
  """
  p = params
  if action in ("walk", "run"):
    return {"gait": action, "direction": p["direction"], "steps": int(p["count"])}
  if action == "jump":
    return {"jump": True, "direction": "none" if p["direction"] == "up" else p["direction"],
            "jumps": int(p["count"])}
  if action == "turn":
    return {"turn_side": p["side"], "angle": int(p["angle"])}
  if action == "spin":
    return {"turn_side": p["side"], "turns": int(p["count"])}
  if action == "wave":
    return {"limb": f"{p['side']}_arm", "waves": int(p["count"])}
  if action == "kick":
    return {"limb": f"{p['side']}_leg", "kicks": int(p["count"])}
  if action == "squat":
    return {"squats": int(p["count"])}
  if action == "sit_down":
    return {"sits": True, "stands_up": bool(p["stand_up"])}
  if action == "raise_arms":
    return {"limb": "both_arms" if p["arms"] == "both" else f"{p['arms']}_arm",
            "arm_style": p["style"], "raises": int(p["count"])}
  if action == "step_back":
    return {"direction": "backward", "steps_back": int(p["count"])}
  raise ValueError(f"unknown action {action!r}: expected one of {ACTION_NAMES}")


# --------------------------------------------------------------------------- measuring

# Detector thresholds, in leg lengths (and seconds). Each sits between what the
# synthetic actions do and what other actions or jitter do; see the tests.
_T = {
    "jump": 0.12,  # pelvis this far above standing height (a run's highest pelvis: ~0.07)...
    "airborne": 0.05,  # ...with the lowest foot joint this far off the floor
    "flight": 0.07,  # a run has >= 2 flights of the lowest foot above this; walks have none
    "swing": 0.3,  # a step: the ankle moves > 0.3 / s and covers >= 0.3 (blend slides: < 0.2)
    "back": (0.1, 0.12),  # a step back: pelvis backwards > 0.1 / s covering >= 0.12 (steps: ~0.3)
    "kick": (0.3, 0.2),  # kicking ankle peak height above the floor, prominence
    "squat": (0.2, 0.25),  # pelvis dips this far below standing height, prominence
    "raise": (-0.5, 0.4),  # wrist elevation (arm lengths above the shoulder) peak, prominence
    "wave": 0.3,  # prominence of a sideways forearm sway (unit forearm direction)
    "sit": (0.25, 0.2, 0.4),  # pelvis below standing by, behind the ankles by, for seconds
    "stand": 0.15,  # standing at the end: pelvis at most this far below standing height
    "limb": (0.3, 0.6),  # a limb moves above this; "both" when the other reaches this fraction
}


def _skeleton(skeleton, joints: np.ndarray) -> Skeleton:
  if skeleton is None:
    return skeleton_for_joints(joints.shape[1])
  skeleton = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
  if joints.shape[1] != skeleton.num_joints:
    raise ValueError(f"joints have {joints.shape[1]} joints; the {skeleton.name} skeleton "
                     f"expects {skeleton.num_joints}")
  return skeleton


@functools.cache
def _standing(skeleton: Skeleton) -> float:
  """Pelvis height above the lowest foot joint when standing straight, in leg lengths."""
  rig = rig_for(skeleton)
  rest = rig.fk(np.zeros((1, rig.num_joints, 3)), np.zeros(1))[0]
  return float((rest[0, 1] - rest[list(rig.feet), 1].min()) / rig.leg_length)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) of the runs of True in a 1-D mask."""
  edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
  return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _peaks(signal: np.ndarray, height=None, prominence=None) -> int:
  return len(find_peaks(signal, height=height, prominence=prominence)[0])


def _pulses(speed: np.ndarray, fps: float, above: float, carry: float) -> int:
  """Runs of speed (leg lengths / s) above `above` that cover `carry` leg lengths or more."""
  return sum(1 for s, e in _runs(speed > above) if speed[s:e].sum() / fps >= carry)


class _Body:
  """The joints in leg lengths (lightly smoothed), the floor, and the per-frame facing."""

  def __init__(self, joints: np.ndarray, fps: float, skeleton: Skeleton):
    rig = rig_for(skeleton)
    self.fps, self.idx = float(fps), rig.index
    legs = [self.span(joints, s, "hip", "knee") + self.span(joints, s, "knee", "ankle")
            for s in "lr"]
    unit = float(np.median(np.mean(legs, axis=0)))  # leg length in the joints' units
    if not unit > 0:
      raise ValueError("joints have zero-length legs: expected (T, J, 3) positions")
    self.j = gaussian_filter1d(joints / unit, 0.03 * fps, axis=0, mode="nearest")
    self.arm = float(np.median(np.mean([self.span(self.j, s, "shoulder", "elbow")
                                        + self.span(self.j, s, "elbow", "wrist")
                                        for s in "lr"], axis=0)))
    feet = self.j[:, list(rig.feet), 1].min(axis=1)
    self.floor = float(np.percentile(feet, 5))  # robust to a few frames below the floor
    self.lowest = feet - self.floor  # lowest foot joint above the floor
    self.height = self.j[:, 0, 1] - self.floor  # pelvis above the floor
    self.standing = _standing(skeleton)
    r_hip, l_hip, r_sho, l_sho = skeleton.face_joints
    across = self.j[:, r_hip] - self.j[:, l_hip] + self.j[:, r_sho] - self.j[:, l_sho]
    fwd = np.stack([across[:, 2], -across[:, 0]], axis=-1)  # up x across, as (x, z)
    self.fwd = fwd / np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)
    self.left = np.stack([self.fwd[:, 1], -self.fwd[:, 0]], axis=-1)
    self.yaw = np.degrees(np.unwrap(np.arctan2(self.fwd[:, 0], self.fwd[:, 1])))
    self.edge = max(1, round(0.1 * fps))  # frames averaged for "at the start / end"

  def span(self, j, side, a, b):
    return np.linalg.norm(j[:, self.idx[f"{side}_{a}"]] - j[:, self.idx[f"{side}_{b}"]], axis=-1)

  def joint(self, side: str, part: str) -> np.ndarray:
    return self.j[:, self.idx[f"{side[0]}_{part}"]]

  def local(self, v: np.ndarray, side: str = "l") -> np.ndarray:
    """(T, 3) world vectors -> (out, up, forward) in each frame's body frame; out = the side's."""
    out = (v[:, 0] * self.left[:, 0] + v[:, 2] * self.left[:, 1]) * (1 if side[0] == "l" else -1)
    return np.stack([out, v[:, 1], v[:, 0] * self.fwd[:, 0] + v[:, 2] * self.fwd[:, 1]], axis=-1)

  def flat(self, v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Per-frame dot product of (T, 2) horizontal vectors with a (T, 2) body axis."""
    return np.einsum("tc,tc->t", v, axis)


def _travel(b: _Body) -> tuple[str, float]:
  """Net travel of the feet relative to the initial facing: (sector or "none", leg lengths)."""
  feet = 0.5 * (b.joint("l", "ankle") + b.joint("r", "ankle"))[:, [0, 2]]
  d = feet[-b.edge:].mean(axis=0) - feet[:b.edge].mean(axis=0)
  fwd = b.fwd[:b.edge].mean(axis=0)
  fwd /= max(np.linalg.norm(fwd), 1e-9)
  ahead, left = d @ fwd, d @ np.array([fwd[1], -fwd[0]])
  distance = float(np.hypot(ahead, left))
  if distance < TOL["still"]:
    return "none", distance
  return SECTORS[round(math.degrees(math.atan2(left, ahead)) / 45.0) % 8], distance


def _limb(b: _Body) -> tuple[str, dict[str, float]]:
  """Which limb moves most: how far each hand / foot gets from its median place relative to
  the shoulder / hip in the body frame (limb lengths), whatever the resting pose."""
  moves = {}
  for side in ("left", "right"):
    for kind, root, end, unit in (("arm", "shoulder", "wrist", b.arm),
                                  ("leg", "hip", "ankle", 1.0)):
      rel = b.local(b.joint(side, end) - b.joint(side, root))
      spread = np.linalg.norm(rel - np.median(rel, axis=0), axis=-1)
      moves[f"{side}_{kind}"] = float(spread.max() / unit)
  top = max(moves, key=moves.get)
  least, both = _T["limb"]
  if moves[top] < least:
    return "none", moves
  side, kind = top.split("_")
  other = moves[("right_" if side == "left" else "left_") + kind]
  return (f"both_{kind}s" if other >= both * moves[top] else top), moves


def _arms(b: _Body, arms: Sequence[str]) -> dict:
  """Raises (wrist elevation peaks), the style at the highest one, and waves (one arm only:
  sideways sways of the forearm while the hand is above the shoulder)."""
  reach = np.mean([b.local(b.joint(s, "wrist") - b.joint(s, "shoulder"), s) / b.arm
                   for s in arms], axis=0)
  top = reach[int(np.argmax(reach[:, 1]))]
  waves = 0
  if len(arms) == 1:
    forearm = b.local(b.joint(arms[0], "wrist") - b.joint(arms[0], "elbow"), arms[0])
    out = forearm[:, 0] / np.maximum(np.linalg.norm(forearm, axis=-1), 1e-9)
    raised = b.joint(arms[0], "wrist")[:, 1] > b.joint(arms[0], "shoulder")[:, 1]
    waves = sum(_peaks(-out[s:e], prominence=_T["wave"]) for s, e in _runs(raised))
  return {"raises": _peaks(reach[:, 1], *_T["raise"]), "waves": waves,
          "arm_style": "up" if top[1] > 0.6 else "side" if top[0] > top[2] else "forward"}


def measure(joints: np.ndarray, fps: float, skeleton: Skeleton | str | None = None) -> dict:
  """Motion descriptors from joints (T, J, 3) alone (y up, any facing, position and units).

  direction: net travel of the feet relative to the initial facing (SECTORS or
  "none"); yaw: signed facing change in degrees (+ = left); turns: |yaw| / 360
  rounded; jumps: pelvis peaks well above standing height with both feet off the
  floor; gait: "run" with flight phases; limb: what moves most ("left_arm",
  "both_legs"...); steps (foot swings), steps_back (backward pelvis pulses),
  kicks, squats (pelvis dips), waves, raises: repetition counts; arm_style: up /
  side / forward at the highest raise; sits (pelvis low and behind the feet),
  ends_standing.
  """
  joints = np.asarray(joints, np.float64)
  if joints.ndim != 3 or joints.shape[-1] != 3 or len(joints) < 2:
    raise ValueError(f"joints of shape {joints.shape} given; expected (T >= 2, J, 3)")
  if not np.isfinite(joints).all():
    raise ValueError("joints contain NaN or Inf values")
  b = _Body(joints, fps, _skeleton(skeleton, joints))
  direction, distance = _travel(b)
  yaw = float(b.yaw[-b.edge:].mean() - b.yaw[:b.edge].mean())
  lifted = np.where(b.height > b.standing + _T["jump"], b.height, b.standing)
  jumps = [p for p in find_peaks(lifted, prominence=0.1)[0] if b.lowest[p] > _T["airborne"]]
  limb, moves = _limb(b)
  kind = limb.split("_")[-1].rstrip("s")
  most = lambda k: max(("left", "right"), key=lambda s: moves[f"{s}_{k}"])
  arms = ("left", "right") if limb == "both_arms" else (
      (limb.split("_")[0] if kind == "arm" else most("arm")),)
  leg = limb.split("_")[0] if limb.endswith("_leg") else most("leg")
  pelvis = b.j[:, 0, [0, 2]]
  smooth = gaussian_filter1d(pelvis, 0.05 * fps, axis=0, mode="nearest")  # jitter adds no pulses
  back = -b.flat(np.gradient(smooth, axis=0) * fps, b.fwd)
  ankles = 0.5 * (b.joint("l", "ankle") + b.joint("r", "ankle"))[:, [0, 2]]
  low, behind, seconds = _T["sit"]
  seated = (b.height < b.standing - low) & (b.flat(pelvis - ankles, b.fwd) < -behind)
  speeds = [np.linalg.norm(np.gradient(b.joint(s, "ankle")[:, [0, 2]], axis=0), axis=-1) * fps
            for s in "lr"]
  return {
      "direction": direction, "distance": distance, "yaw": yaw,
      "turn_side": "left" if yaw > TOL["turn"] else "right" if yaw < -TOL["turn"] else "none",
      "turns": round(abs(yaw) / 360.0), "jumps": len(jumps), "limb": limb, "moves": moves,
      "gait": "run" if len(_runs(b.lowest > _T["flight"])) >= 2 else "walk",
      "steps": sum(_pulses(v, fps, _T["swing"], _T["swing"]) for v in speeds),
      "steps_back": _pulses(back, fps, *_T["back"]),
      "kicks": _peaks(b.joint(leg, "ankle")[:, 1] - b.floor, *_T["kick"]),
      "squats": _peaks(-b.height, -(b.standing - _T["squat"][0]), _T["squat"][1]),
      **_arms(b, arms),
      "sits": max((e - s for s, e in _runs(seated)), default=0) >= seconds * fps,
      "ends_standing": bool(b.height[-b.edge:].mean() > b.standing - _T["stand"]),
  }


# --------------------------------------------------------------------------- checking


def _holds(name: str, claim, measured: dict) -> bool:
  if name == "steps":
    return abs(measured["steps"] - claim) <= max(1, math.ceil(TOL["steps"] * claim))
  if name == "jump":
    return (measured["jumps"] > 0) == claim
  if name == "angle":
    return measured["turn_side"] != "none" and abs(abs(measured["yaw"]) - claim) <= TOL["turn"]
  if name == "stands_up":
    return measured["ends_standing"] == claim
  return measured[name] == claim


def check(action: str, params: Mapping, joints: np.ndarray, fps: float,
          skeleton: Skeleton | str | None = None, measured: dict | None = None) -> dict[str, bool]:
  """Each claim of `attributes(action, params)` against what `measure` finds in the joints."""
  measured = measure(joints, fps, skeleton) if measured is None else measured
  return {name: bool(_holds(name, claim, measured))
          for name, claim in attributes(action, params).items()}


def score(items: Sequence[SemanticItem], motions: Sequence[np.ndarray], fps: float,
          skeleton: Skeleton | str | None = None) -> dict:
  """Per action: items, accuracy (all claims hold) and per-attribute accuracy; the mean over
  actions ("mean_accuracy") and over items ("accuracy"); "passed": each item's verdict, in the
  given order. A motion that cannot be measured (NaN, too short, wrong joint count) fails all its
  claims and is counted in "unmeasurable"."""
  if len(items) != len(motions):
    raise ValueError(f"{len(items)} items but {len(motions)} motions: expected one motion per item")
  results: dict[str, list[dict]] = {}
  passed: list[bool] = []
  unmeasurable = 0
  for item, joints in zip(items, motions):
    try:
      result = check(item.action, item.params, joints, fps, skeleton)
    except ValueError as e:  # one broken generation must not end an evaluation
      log.warning("%s %s: cannot measure the motion: %s", item.motion_id, item.frames, e)
      result = dict.fromkeys(attributes(item.action, item.params), False)
      unmeasurable += 1
    results.setdefault(item.action, []).append(result)
    passed.append(all(result.values()))
  actions = {name: {"items": len(rows), "accuracy": float(np.mean([all(r.values()) for r in rows])),
                    "attributes": {a: float(np.mean([r[a] for r in rows])) for a in rows[0]}}
             for name, rows in results.items()}
  return {"actions": actions, "items": len(items), "unmeasurable": unmeasurable, "passed": passed,
          "mean_accuracy": float(np.mean([a["accuracy"] for a in actions.values()]))
                           if actions else float("nan"),
          "accuracy": float(np.mean(passed)) if passed else float("nan")}


def format_table(columns: Mapping[str, dict], per_attribute: bool = False) -> str:
  """A text table: one row per action (and attribute), one column per scores dict, e.g.
  {"generated": ..., "retrieval baseline": ..., "ground truth": ...}."""
  if "actions" in columns:  # a single scores dict
    columns = {"accuracy": columns}
  names = sorted({a for s in columns.values() for a in s["actions"]},
                 key=lambda a: (ACTION_NAMES.index(a) if a in ACTION_NAMES else 99, a))
  rows = []
  for name in names:
    cells = [columns[c]["actions"].get(name) for c in columns]
    n = next((c["items"] for c in cells if c), 0)
    rows.append([name, str(n)] + [f"{c['accuracy']:.2f}" if c else "-" for c in cells])
    attrs = [a for c in cells if c for a in c["attributes"]] if per_attribute else []
    for attr in dict.fromkeys(attrs):
      rows.append([f"  {attr}", ""] + [f"{c['attributes'][attr]:.2f}"
                                       if c and attr in c["attributes"] else "-" for c in cells])
  rows.append(["mean over actions", str(sum(s["items"] for s in list(columns.values())[:1]))]
              + [f"{s['mean_accuracy']:.2f}" for s in columns.values()])
  header = ["action", "n"] + list(columns)
  widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
  lines = [[c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
           for r in [header, ["-" * w for w in widths]] + rows]
  return "\n".join("  ".join(r) for r in lines)
