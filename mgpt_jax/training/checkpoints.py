"""Orbax checkpoints of the train state: save every K steps, keep N, restore the latest.

A committed checkpoint that cannot be read (truncated, corrupted) is reported, moved aside to
checkpoints_unreadable/ and the previous one is used. Temporary directories of saves that a
killed run left behind are removed when the manager opens.
"""
from __future__ import annotations

import os
import shutil
import sys

import jax
import orbax.checkpoint as ocp
from absl import logging

from mgpt_jax.errors import one_line

UNREADABLE_DIR = "checkpoints_unreadable"


class Checkpoints:

  def __init__(self, directory: str, save_every: int = 1000, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(directory, "checkpoints"))
    self.unreadable_dir = os.path.abspath(os.path.join(directory, UNREADABLE_DIR))
    self.options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every,
                                                create=True, cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=self.options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state, step: int | None = None):
    """Restores into the structure, dtypes and shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_latest(self, abstract_state):
    """The state of the newest checkpoint that can be read, or None when none can.

    Each unreadable newer one is reported on stderr and moved aside, so that the run
    continues from the previous step and saves its own checkpoint of that step again.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return self.restore(abstract_state, step)
      except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many kinds
        self._set_aside(step, e)
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    source = os.path.join(self.directory, str(step))
    target = os.path.join(self.unreadable_dir, str(step))
    message = (f"warning: checkpoint {source} is unreadable ({one_line(error)[:300]}); "
               f"moved it to {target} and trying the previous one")
    logging.warning(message)
    print(message, file=sys.stderr)
    self.manager.close()
    if jax.process_index() == 0:
      os.makedirs(self.unreadable_dir, exist_ok=True)
      if os.path.exists(target):
        shutil.rmtree(target)
      os.replace(source, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
    self.manager = ocp.CheckpointManager(self.directory, options=self.options)

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves when `step` is on the interval (or `force`); multi-host safe.

    Only on the interval: orbax alone would also save the first step of every run, and a
    resumption from there would split the interval the logged metrics average over.
    """
    if not force and step % self.options.save_interval_steps:
      return False
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
