"""Stage-1 loss: SmoothL1 on all features + lambda_vel * SmoothL1 on the RIC joint positions
+ lambda_commit * commitment. The "velocity" term of the reference is applied to the RIC
positions (dims 4 : 4 + 3(J-1)), exactly as T2M-GPT does; it works for any joint count
(the MotionGPT code raises for KIT's 251-d features)."""
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


@dataclasses.dataclass(frozen=True)
class ReconstructionLoss:
  lambda_feature: float = 1.0
  lambda_velocity: float = 0.5
  lambda_commit: float = 0.02

  def __call__(self, reconstruction, target, commit_loss) -> tuple[jnp.ndarray, dict]:
    ric = slice(4, 4 + 3 * (num_joints_of(target.shape[-1]) - 1))
    feature = smooth_l1(reconstruction, target)
    velocity = smooth_l1(reconstruction[..., ric], target[..., ric])
    loss = (self.lambda_feature * feature + self.lambda_velocity * velocity
            + self.lambda_commit * commit_loss)
    return loss, {"loss_feature": feature, "loss_ric": velocity, "loss_commit": commit_loss}
