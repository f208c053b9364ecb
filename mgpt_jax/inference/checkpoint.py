"""Reads trained variables out of a run directory's orbax checkpoints (no training code needed)."""
from __future__ import annotations

import os

import orbax.checkpoint as ocp


def read_variables(model_dir: str, step: int | None = None) -> tuple[dict, int]:
  """(flax variables {"params": ..., <state collections>}, step) of a checkpoint; latest by default."""
  directory = os.path.abspath(os.path.join(model_dir, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no checkpoints; is {model_dir} a training run directory?")
  with ocp.CheckpointManager(directory) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{directory}: no checkpoint saved yet")
    tree = manager.restore(step, args=ocp.args.StandardRestore())
  return {"params": tree["params"], **tree.get("model_state", {})}, int(step)


def write_variables(model_dir: str, variables: dict, step: int = 0) -> None:
  """Saves flax variables as checkpoint `step` in the layout `read_variables` restores."""
  variables = dict(variables)
  tree = {"params": variables.pop("params"), "model_state": variables}
  directory = os.path.abspath(os.path.join(model_dir, "checkpoints"))
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True)) as m:
    m.save(step, args=ocp.args.StandardSave(tree), force=True)
    m.wait_until_finished()
