"""Parametric actions: (params, rng) -> per-frame local joint rotations and root motion.

Every action is authored for the left side and mirrored for the right, so a
"left" and a "right" variant differ by exactly a reflection. Angles are in
degrees where they are written down, translations in leg lengths (thigh +
shin), so the same action fits HumanML3D's metres and KIT's millimetres.
Timing is in seconds; `speed` scales the tempo, a small jitter keeps every
motion a little different while the parameters stay clearly visible.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

from mgpt_jax.data.synthetic.rig import Rig

SPEEDS = ("slow", "normal", "fast")
SIDES = ("left", "right")
_TEMPO = {"slow": 0.72, "normal": 1.0, "fast": 1.35}

# Body-frame unit vectors (left, forward) of the directions of travel.
DIRECTIONS = {
    "forward": (0.0, 1.0), "backward": (0.0, -1.0), "left": (1.0, 0.0), "right": (-1.0, 0.0),
    "forward_left": (0.7071, 0.7071), "forward_right": (-0.7071, 0.7071), "up": (0.0, 0.0),
}

# Rotation axes in a joint's rest frame. A positive angle about SWING moves a
# hanging limb forward; about KNEE it folds the shin back; about LEAN it tips the
# torso forward; about ABDUCT it lifts a left limb out to the left.
SWING = np.array([-1.0, 0.0, 0.0])
KNEE = np.array([1.0, 0.0, 0.0])
LEAN = np.array([1.0, 0.0, 0.0])
ABDUCT = np.array([0.0, 0.0, 1.0])


@dataclasses.dataclass
class Clip:
  rot: np.ndarray  # (n, J, 3) local axis-angles
  disp: np.ndarray  # (n, 2) body-frame (left, forward) displacement since the first frame
  yaw: np.ndarray  # (n,) yaw since the first frame, radians, + = to the left
  lift: np.ndarray  # (n,) root height above what keeps the lowest foot on the floor
  anchor: np.ndarray  # (n, 2) weights of the (left, right) ankle held fixed on the floor

  def __len__(self) -> int:
    return len(self.rot)

  def mirrored(self, rig: Rig) -> "Clip":
    return Clip(self.rot[:, rig.mirror] * np.array([1.0, -1.0, -1.0]),
                self.disp * np.array([-1.0, 1.0]), -self.yaw, self.lift, self.anchor[:, ::-1])


@dataclasses.dataclass(frozen=True)
class Context:
  rig: Rig
  fps: float
  rng: np.random.Generator

  @property
  def leg(self) -> float:
    return self.rig.leg_length

  def times(self, seconds: float) -> np.ndarray:
    """Frame times covering [0, seconds] (both ends included)."""
    return np.arange(max(2, int(round(seconds * self.fps)) + 1)) / self.fps

  def jitter(self, spread: float = 0.08) -> float:
    return float(self.rng.uniform(1.0 - spread, 1.0 + spread))


def smoothstep(s):
  s = np.clip(s, 0.0, 1.0)
  return s * s * (3.0 - 2.0 * s)


def keyframes(t: np.ndarray, times, values) -> np.ndarray:
  """Eases in and out between (time, value) keys; holds the end values outside."""
  times = np.asarray(times, np.float64)
  values = np.asarray(values, np.float64)
  i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
  s = smoothstep((t - times[i]) / np.maximum(times[i + 1] - times[i], 1e-9))
  return values[i] + (values[i + 1] - values[i]) * s


def envelope(t: np.ndarray, duration: float, ramp: float) -> np.ndarray:
  return smoothstep(t / ramp) * smoothstep((duration - t) / ramp)


class _Pose:
  """Accumulates rotations of one clip; angles in degrees, per frame or constant."""

  def __init__(self, ctx: Context, t: np.ndarray):
    self.rig, self.t = ctx.rig, t
    self.rot = np.zeros((len(t), ctx.rig.num_joints, 3))

  def add(self, joint: str, axis, degrees) -> None:
    index = self.rig.get(joint)
    if index is not None:  # KIT has no collars or separate neck
      self.rot[:, index] += np.radians(np.broadcast_to(degrees, self.t.shape))[:, None] * axis

  def spine(self, axis, degrees) -> None:
    share = np.radians(np.broadcast_to(degrees, self.t.shape))[:, None] * axis / len(self.rig.spine)
    for index in self.rig.spine:
      self.rot[:, index] += share

  def leg(self, side: str, hip_axis, hip, knee, ankle_follow: float = 0.6) -> None:
    """Hip swing + knee fold; the ankle undoes part of both so the foot stays near flat."""
    hip_aa = np.radians(np.broadcast_to(hip, self.t.shape))[:, None] * hip_axis
    knee_aa = np.radians(np.broadcast_to(knee, self.t.shape))[:, None] * KNEE
    self.rot[:, self.rig.side(side, "hip")] += hip_aa
    self.rot[:, self.rig.side(side, "knee")] += knee_aa
    self.rot[:, self.rig.side(side, "ankle")] -= ankle_follow * (hip_aa + knee_aa)

  def clip(self, disp=None, yaw=None, lift=None, anchor=(0.5, 0.5)) -> Clip:
    n = len(self.t)
    return Clip(self.rot, np.zeros((n, 2)) if disp is None else disp,
                np.zeros(n) if yaw is None else yaw, np.zeros(n) if lift is None else lift,
                np.broadcast_to(np.asarray(anchor, np.float64), (n, 2)).copy())


def _stepping(pose: _Pose, phase: np.ndarray, knee: float, env) -> None:
  """Alternating knee lifts in place (turns and spins): left on sin > 0, right on sin < 0."""
  for side, sign in (("left", 1.0), ("right", -1.0)):
    lift = knee * env * np.maximum(0.0, sign * np.sin(phase))**1.5
    pose.leg(side, SWING, 0.5 * lift, lift)


# --------------------------------------------------------------------------- locomotion


def _gait(params: dict, ctx: Context, run: bool) -> Clip:
  """Alternating steps towards `direction`, the body keeping its facing.

  Each foot moves back at the root's speed while it stands (so it stays put on
  the floor) and swings forward with a knee fold while the other one stands.
  """
  speed = params["speed"]
  cadence = {"slow": 1.45, "normal": 1.8, "fast": 2.2}[speed]  # steps per second
  swing = {"slow": 19.0, "normal": 24.0, "fast": 29.0}[speed]  # hip angle at the stride's end
  if run:
    cadence, swing = {"slow": 2.5, "normal": 2.8, "fast": 3.1}[speed], swing + 7.0
  direction = np.asarray(DIRECTIONS[params["direction"]])
  if direction[1] <= 0.0:
    swing *= 0.75  # shorter strides backwards and sideways
  cadence, swing = cadence * ctx.jitter(), swing * ctx.jitter()
  stride = 2.0 * ctx.leg * np.sin(np.radians(swing))  # one step's length
  duration = params["count"] / cadence
  t = ctx.times(duration)
  env = envelope(t, duration, 0.6 / cadence)
  phase = np.pi * cadence * t + np.pi * ctx.rng.integers(2)  # which leg leads
  axis = np.array([-direction[1], 0.0, direction[0]])  # swings the foot towards `direction`
  knee = (95.0 if run else 55.0) * ctx.jitter()

  pose = _Pose(ctx, t)
  for side, offset in (("left", 0.0), ("right", np.pi)):
    psi = np.mod(phase + offset, 2.0 * np.pi)
    standing = psi < np.pi
    ahead = np.where(standing, 0.5 - psi / np.pi, -0.5 * np.cos(psi - np.pi)) * env
    hip = np.degrees(np.arcsin(np.clip(ahead * stride / ctx.leg, -0.95, 0.95)))
    fold = knee * env * np.where(standing, 0.0, np.sin(psi - np.pi))
    pose.leg(side, axis, hip, fold)
    pose.add(f"{side[0]}_hip", SWING, 0.3 * fold)
    arm_gain = (1.1 if run else 0.8) * (0.3 + 0.7 * abs(direction[1]))
    pose.add(f"{side[0]}_shoulder", axis, -hip * arm_gain)
    pose.add(f"{side[0]}_elbow", SWING, (80.0 if run else 12.0) * env)
  pose.spine(LEAN, (12.0 if run else 3.0) * env)

  travelled = np.concatenate([[0.0], np.cumsum(env[1:])]) * stride * cadence / ctx.fps
  lift = None
  if run:  # airborne around the widest stride (phase 0 mod pi), above the mid-stance height
    lift = (ctx.leg * (1.0 - np.cos(np.radians(swing))) + 0.04 * ctx.leg) * env * np.cos(phase)**2
  return pose.clip(disp=travelled[:, None] * direction, lift=lift, anchor=(0.0, 0.0))


def step_back(params, ctx):
  """Discrete steps back: one foot reaches back, the other joins it, a short pause."""
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  step_s, pause_s = 0.95 / tempo, 0.15 / tempo
  size = 0.32 * ctx.leg * ctx.jitter()
  t = ctx.times(params["count"] * (step_s + pause_s))
  k = np.minimum((t // (step_s + pause_s)).astype(int), params["count"] - 1)
  s = np.clip((t - k * (step_s + pause_s)) / step_s, 0.0, 1.0)
  first, second = smoothstep(2 * s), smoothstep(2 * s - 1)
  root = -size * (k + smoothstep(s))
  lead = np.where(k % 2 == ctx.rng.integers(2), 1.0, 0.0)  # 1 where the left foot goes first
  feet = {"left": -size * (k + lead * first + (1 - lead) * second),
          "right": -size * (k + (1 - lead) * first + lead * second)}
  pose = _Pose(ctx, t)
  for side, moves_first in (("left", lead), ("right", 1 - lead)):
    reach = np.clip((feet[side] - root) / ctx.leg, -0.9, 0.9)
    in_swing = np.where(moves_first > 0, s < 0.5, s >= 0.5)
    fold = 35.0 * in_swing * np.sin(np.pi * np.clip(2 * s - (moves_first == 0), 0, 1))
    pose.leg(side, SWING, np.degrees(np.arcsin(reach)) + 0.4 * fold, fold)
  disp = np.stack([np.zeros_like(root), root], axis=-1)
  return pose.clip(disp=disp - disp[0], anchor=(0.0, 0.0))


def turn(params, ctx):
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  angle = np.radians(params["angle"] + ctx.rng.uniform(-5.0, 5.0))
  duration = (1.1 if params["angle"] == 90 else 1.6) / tempo
  t = ctx.times(duration)
  yaw = angle * keyframes(t, [0.0, duration], [0.0, 1.0])
  pose = _Pose(ctx, t)
  steps = 2 if params["angle"] == 90 else 3
  _stepping(pose, np.pi * steps * t / duration, 30.0, 1.0)
  pose.add("neck", np.array([0.0, 1.0, 0.0]), 10.0 * np.sin(np.pi * t / duration))  # look ahead
  clip = pose.clip(yaw=yaw, anchor=(0.0, 0.0))
  return clip if params["side"] == "left" else clip.mirrored(ctx.rig)


def spin(params, ctx):
  """Whole turns in place; the facing passes +-180 degrees on the way."""
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  per_turn = 2.0 / tempo
  duration = params["count"] * per_turn + 0.4
  t = ctx.times(duration)
  rate = envelope(t, duration, 0.35)
  yaw = np.cumsum(rate) - rate[0]
  yaw *= 2.0 * np.pi * params["count"] / yaw[-1]
  pose = _Pose(ctx, t)
  _stepping(pose, np.pi * 2.5 * tempo * t, 35.0, rate)
  for side in SIDES:
    pose.add(f"{side[0]}_shoulder", ABDUCT * (1 if side == "left" else -1), 35.0 * rate)
    pose.add(f"{side[0]}_elbow", SWING, 30.0 * rate)
  clip = pose.clip(yaw=yaw, anchor=(0.0, 0.0))
  return clip if params["side"] == "left" else clip.mirrored(ctx.rig)


def jump(params, ctx):
  """`count` jumps, each crouch -> push -> flight -> landing; the root dips between jumps."""
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  height = 0.28 * ctx.jitter(0.12) * (1.0 if params["direction"] == "up" else 0.8)
  flight = 2.0 * np.sqrt(2.0 * height * 0.82 / 9.81)  # physical time for a 0.82 m leg
  prep, push, land, rest = 0.4 / tempo, 0.12, 0.3 / tempo, 0.25 / tempo
  reach = {"up": 0.0, "forward": 0.55, "backward": 0.35, "left": 0.4, "right": 0.4,
           "forward_left": 0.45, "forward_right": 0.45}[params["direction"]] * ctx.leg
  cycle = prep + push + flight + land
  count = params["count"]
  t = ctx.times(count * cycle + rest)
  crouch_keys, arm_keys, key_t = [0.0], [0.0], [0.0]
  for k in range(count):
    t0 = k * cycle
    key_t += [t0 + prep, t0 + prep + push, t0 + prep + push + flight / 2,
              t0 + prep + push + flight, t0 + cycle]
    crouch_keys += [1.0, 0.0, 0.2, 0.05, 0.7]
    arm_keys += [-45.0, 70.0, 60.0, 20.0, -20.0]
  key_t.append(count * cycle + rest)
  crouch_keys.append(0.0)
  arm_keys.append(0.0)
  crouch = keyframes(t, key_t, crouch_keys) * ctx.jitter()
  arms = keyframes(t, key_t, arm_keys)

  into = np.mod(t, cycle) - prep  # time since the push began, within each cycle
  airborne = (into > 0) & (into < push + flight) & (t < count * cycle)
  in_flight = np.clip((into - push) / flight, 0.0, 1.0)
  lift = np.where(airborne, 4.0 * height * ctx.leg * in_flight * (1.0 - in_flight), 0.0)
  done = np.minimum(t // cycle, count) + np.where(t < count * cycle,
                                                  np.clip(into / (push + flight), 0, 1), 0)
  disp = done[:, None] * reach * np.asarray(DIRECTIONS[params["direction"]])

  pose = _Pose(ctx, t)
  depth = 55.0 * crouch
  for side in SIDES:
    pose.leg(side, SWING, depth, 2.0 * depth, ankle_follow=1.0)
    pose.add(f"{side[0]}_shoulder", SWING, arms)
    pose.add(f"{side[0]}_elbow", SWING, 20.0)
  pose.spine(LEAN, 25.0 * crouch)
  anchor = np.where(airborne, 0.0, 0.5)[:, None] * np.ones(2)
  return pose.clip(disp=disp, lift=lift, anchor=anchor)


# --------------------------------------------------------------------------- in place


def wave(params, ctx):
  """The hand goes up beside the head and the forearm sways `count` times."""
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  raise_s, period = 0.5 / tempo, 0.55 / tempo
  waving = params["count"] * period
  t = ctx.times(2 * raise_s + waving)
  up = keyframes(t, [0, raise_s, raise_s + waving, 2 * raise_s + waving], [0, 1, 1, 0])
  s = np.clip((t - raise_s) / waving, 0.0, 1.0)
  sway = 0.5 * (1.0 - np.cos(2.0 * np.pi * params["count"] * s))  # one peak per wave
  pose = _Pose(ctx, t)
  pose.add("l_shoulder", ABDUCT, 140.0 * ctx.jitter() * up)
  pose.add("l_shoulder", SWING, 15.0 * up)
  pose.add("l_elbow", ABDUCT, 15.0 * up + 50.0 * ctx.jitter() * sway)
  clip = pose.clip()
  return clip if params["side"] == "left" else clip.mirrored(ctx.rig)


def kick(params, ctx):
  """`count` front kicks with the left leg while the right foot stays planted."""
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  each, pause = 1.0 / tempo, 0.15 / tempo
  height = ctx.jitter(0.12)
  t = ctx.times(params["count"] * (each + pause))
  s = np.clip(np.mod(t, each + pause) / each, 0.0, 1.0)
  hip = keyframes(s, [0, 0.3, 0.48, 0.66, 1.0], [0, 65, 80, 60, 0]) * height
  knee = keyframes(s, [0, 0.3, 0.48, 0.66, 1.0], [0, 90, 8, 90, 0])
  extended = keyframes(s, [0, 0.48, 1.0], [0, 1, 0])
  braced = keyframes(t, [0, 0.2, t[-1] - 0.2, t[-1]], [0, 1, 1, 0])
  pose = _Pose(ctx, t)
  pose.leg("left", SWING, hip, knee, ankle_follow=0.2)
  pose.leg("right", SWING, 5.0 * braced, 12.0 * braced)
  pose.spine(LEAN, -12.0 * extended)
  pose.add("l_shoulder", ABDUCT, 20.0 * braced)
  pose.add("r_shoulder", -ABDUCT, 20.0 * braced)
  pose.add("r_shoulder", SWING, 25.0 * extended)
  clip = pose.clip(anchor=(0.0, 1.0))
  return clip if params["side"] == "left" else clip.mirrored(ctx.rig)


def squat(params, ctx):
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  down, hold, pause = 0.7 / tempo, 0.25 / tempo, 0.25 / tempo
  each = 2 * down + hold + pause
  t = ctx.times(params["count"] * each)
  depth = keyframes(np.mod(t, each), [0, down, down + hold, 2 * down + hold, each],
                    [0, 1, 1, 0, 0]) * 62.0 * ctx.jitter()
  pose = _Pose(ctx, t)
  for side in SIDES:
    pose.leg(side, SWING, depth, 2.0 * depth, ankle_follow=1.0)
    pose.add(f"{side[0]}_shoulder", SWING, 1.2 * depth)
  pose.spine(LEAN, 0.55 * depth)
  return pose.clip()


def sit_down(params, ctx):
  """Sits on an invisible chair (the root moves back over the planted feet), maybe stands up."""
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  move, hold = 1.3 / tempo, 1.2 * ctx.jitter(0.25)
  times, values = [0, move, move + hold], [0, 1, 1]
  if params["stand_up"]:
    times, values = times + [2 * move + hold, 2 * move + hold + 0.2], values + [0, 0]
  t = ctx.times(times[-1])
  seat = keyframes(t, times, values)
  pose = _Pose(ctx, t)
  for side in SIDES:
    pose.leg(side, SWING, 85.0 * seat, 85.0 * seat, ankle_follow=0.0)
    pose.add(f"{side[0]}_shoulder", SWING, 35.0 * seat)
    pose.add(f"{side[0]}_elbow", SWING, 45.0 * seat)
  pose.spine(LEAN, 15.0 * seat + 80.0 * seat * (1.0 - seat))  # lean in while moving
  return pose.clip()


def raise_arms(params, ctx):
  tempo = _TEMPO[params["speed"]] * ctx.jitter()
  move, hold, pause = 0.7 / tempo, 0.6 * ctx.jitter(0.2), 0.2 / tempo
  each = 2 * move + hold + pause
  t = ctx.times(params["count"] * each)
  up = keyframes(np.mod(t, each), [0, move, move + hold, 2 * move + hold, each], [0, 1, 1, 0, 0])
  one = _Pose(ctx, t)  # the left arm; the right one is its mirror image
  if params["style"] == "up":
    one.add("l_shoulder", ABDUCT, 165.0 * up)
    one.add("l_shoulder", SWING, 10.0 * up)
  elif params["style"] == "side":
    one.add("l_shoulder", ABDUCT, 90.0 * ctx.jitter() * up)
  else:
    one.add("l_shoulder", SWING, 90.0 * ctx.jitter() * up)
  clip = one.clip()
  mirrored = clip.mirrored(ctx.rig)
  if params["arms"] == "right":
    return mirrored
  if params["arms"] == "both":
    clip.rot = clip.rot + mirrored.rot
  return clip


def idle(params, ctx):
  """Standing still; the generator's noise layer keeps it alive."""
  return _Pose(ctx, ctx.times(params["seconds"])).clip()


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class ActionSpec:
  build: Callable[[dict, Context], Clip]
  choices: dict  # param -> (values, weights or None)
  weight: float  # how often the generator picks it


_SPEED = (SPEEDS, (0.25, 0.5, 0.25))
_SIDE = (SIDES, None)

ACTIONS: dict[str, ActionSpec] = {
    "walk": ActionSpec(functools.partial(_gait, run=False), {
        "direction": (("forward", "backward", "left", "right", "forward_left", "forward_right"),
                      (0.4, 0.15, 0.1, 0.1, 0.125, 0.125)),
        "count": ((3, 4, 5, 6, 7, 8), None), "speed": _SPEED}, 0.18),
    "run": ActionSpec(functools.partial(_gait, run=True), {
        "direction": (("forward", "backward", "forward_left", "forward_right"),
                      (0.6, 0.1, 0.15, 0.15)),
        "count": ((4, 5, 6, 7, 8, 9, 10), None), "speed": _SPEED}, 0.08),
    "jump": ActionSpec(jump, {
        "direction": (("up", "forward", "backward", "left", "right"),
                      (0.4, 0.25, 0.11, 0.12, 0.12)),
        "count": ((1, 2, 3), None), "speed": _SPEED}, 0.1),
    "turn": ActionSpec(turn, {"side": _SIDE, "angle": ((90, 180), (0.65, 0.35)), "speed": _SPEED},
                       0.11),
    "wave": ActionSpec(wave, {"side": _SIDE, "count": ((2, 3, 4), None), "speed": _SPEED}, 0.08),
    "kick": ActionSpec(kick, {"side": _SIDE, "count": ((1, 2, 3), None), "speed": _SPEED}, 0.08),
    "squat": ActionSpec(squat, {"count": ((1, 2, 3), None), "speed": _SPEED}, 0.07),
    "sit_down": ActionSpec(sit_down, {"stand_up": ((True, False), None), "speed": _SPEED}, 0.06),
    "raise_arms": ActionSpec(raise_arms, {
        "arms": (("both", "left", "right"), (0.5, 0.25, 0.25)),
        "style": (("up", "side", "forward"), None), "count": ((1, 2), (0.7, 0.3)),
        "speed": _SPEED}, 0.08),
    "step_back": ActionSpec(step_back, {"count": ((1, 2, 3), None), "speed": _SPEED}, 0.07),
    "spin": ActionSpec(spin, {"side": _SIDE, "count": ((1, 2), (0.7, 0.3)), "speed": _SPEED}, 0.09),
}
ACTION_NAMES = tuple(ACTIONS)


def sample_params(name: str, rng: np.random.Generator, given: dict | None = None) -> dict:
  """All parameters of an action: the given ones (checked), the rest drawn at random."""
  if name not in ACTIONS:
    raise ValueError(f"unknown action {name!r}: expected one of {ACTION_NAMES}")
  choices = ACTIONS[name].choices
  given = dict(given or {})
  unknown = set(given) - set(choices)
  if unknown:
    raise ValueError(f"action {name!r} has no parameter(s) {sorted(unknown)}; "
                     f"it takes {sorted(choices)}")
  params = {}
  for key, (values, weights) in choices.items():
    # Draw even when the value is given, so forcing one parameter leaves the others' draws alone.
    drawn = values[int(rng.choice(len(values), p=weights))]
    if key in given and given[key] not in values:
      raise ValueError(f"{name}.{key} must be one of {values}, got {given[key]!r}")
    params[key] = given.get(key, drawn)
  return params


def build(name: str, params: dict, ctx: Context) -> Clip:
  return ACTIONS[name].build(params, ctx)
