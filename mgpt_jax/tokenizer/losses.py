"""Stage-1 loss: a distance on all features + lambda_vel * the same distance on the RIC joint
positions (+ lambda_root * on the 4 root dims, + lambda_path * on the root's path, + lambda_delta *
on the frame-to-frame change of all features) + lambda_commit * commitment. The distance is
SmoothL1 as in the reference, or L2 / L1 (`kind`, T2M-GPT's `--recons-loss`). The "velocity"
term of the reference is applied to the RIC positions (dims 4 : 4 + 3(J-1)), exactly as T2M-GPT
does; it works for any joint count (the MotionGPT code raises for KIT's 251-d features)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp


def smooth_l1(prediction, target, beta: float = 1.0):
  diff = jnp.abs(prediction - target)
  return jnp.mean(jnp.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta))


def num_joints_of(nfeats: int) -> int:
  """J from the feature width 4 + 3(J-1) + 6(J-1) + 3J + 4 = 12J - 1."""
  if (nfeats + 1) % 12:
    raise ValueError(f"{nfeats} is not a HumanML3D-style feature width (12J - 1)")
  return (nfeats + 1) // 12


def l2(prediction, target):
  return jnp.mean((prediction - target) ** 2)


def l1(prediction, target):
  return jnp.mean(jnp.abs(prediction - target))


KINDS = {"l1_smooth": smooth_l1, "l2": l2, "l1": l1}
ROOT = slice(0, 4)  # root facing velocity, xz velocity, height: the same for every skeleton
ROOT_VELOCITY = slice(0, 3)  # facing and xz velocity: integrated over time, the root's path


def path(features):
  """The root's path through the window: cumulative facing and xz velocity (B, T, 3), over T so
  that a bias of one unit held for the whole window ends at 1."""
  return jnp.cumsum(features[..., ROOT_VELOCITY], axis=-2) / features.shape[-2]


@dataclasses.dataclass(frozen=True)
class ReconstructionLoss:
  """`kind`: 'l1_smooth' (the reference), 'l2' or 'l1'. An L1-like loss fits the median of
  what one code stands for, so a rare mode (sideways steps, a small fast sway) that shares
  codes with common ones is decoded as the common one; L2 fits the mean, whose pull makes
  the encoder give it codes of its own (README: the main job, "what moved the numbers")."""
  lambda_feature: float = 1.0
  lambda_velocity: float = 0.5
  lambda_commit: float = 0.02
  kind: str = "l1_smooth"
  lambda_root: float = 0.0
  # A small bias in the decoded velocity is invisible frame by frame but, summed over a clip,
  # moves a jump in place forwards: this term weighs the error of the integrated path.
  lambda_path: float = 0.0
  # A fast small sway decoded as its mean over phases comes back damped; the change from frame
  # to frame keeps its amplitude in the loss.
  lambda_delta: float = 0.0

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"ReconstructionLoss.kind={self.kind!r}: expected one of {sorted(KINDS)}")

  def __call__(self, reconstruction, target, commit_loss) -> tuple[jnp.ndarray, dict]:
    ric = slice(4, 4 + 3 * (num_joints_of(target.shape[-1]) - 1))
    distance = KINDS[self.kind]
    feature = distance(reconstruction, target)
    velocity = distance(reconstruction[..., ric], target[..., ric])
    root = distance(reconstruction[..., ROOT], target[..., ROOT])
    loss = (self.lambda_feature * feature + self.lambda_velocity * velocity
            + self.lambda_root * root + self.lambda_commit * commit_loss)
    terms = {"loss_feature": feature, "loss_ric": velocity, "loss_root": root,
             "loss_commit": commit_loss}
    # Traced only when weighed, so that a recipe without them compiles the step it did before.
    if self.lambda_path:
      terms["loss_path"] = distance(path(reconstruction), path(target))
      loss += self.lambda_path * terms["loss_path"]
    if self.lambda_delta:
      terms["loss_delta"] = distance(jnp.diff(reconstruction, axis=-2),
                                     jnp.diff(target, axis=-2))
      loss += self.lambda_delta * terms["loss_delta"]
    return loss, terms
