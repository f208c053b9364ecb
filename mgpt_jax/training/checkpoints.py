"""Orbax checkpoints of the train state: save every K steps, keep N, restore the latest."""
from __future__ import annotations

import os

import orbax.checkpoint as ocp


class Checkpoints:

  def __init__(self, directory: str, save_every: int = 1000, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(directory, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every,
                                             create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state, step: int | None = None):
    """Restores into the structure, dtypes and shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves when `step` is on the interval (or `force`); multi-host safe."""
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
