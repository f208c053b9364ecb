"""T5X checkpoints of our T5, written and read without t5x.

T5X (since it moved to orbax) keeps a train state in `DIR/checkpoint_<step>/state`: an orbax
PyTree of {'target': parameters, 'state': {'step': ..., 'param_states': optimizer state}}, beside
orbax's `_CHECKPOINT_METADATA`. Our module is the network t5x trains (gin/t5x_lm.gin), so the
target is exactly our parameter tree. A checkpoint written here holds the target and step 0:
`t5x.train` starts from it with INITIAL_CHECKPOINT_PATH (gin/pretrain.gin lets the optimizer's
state start from its initial value: RestoreCheckpointConfig.fallback_to_scratch).
"""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

STEP_PREFIX = "checkpoint"  # checkpoint_<step>, the directory names t5x reads steps from
STATE_ITEM = "state"


def checkpoint_path(out_dir: str, step: int = 0) -> str:
  return os.path.join(os.path.abspath(out_dir), f"{STEP_PREFIX}_{step}")


def write_t5x_checkpoint(out_dir: str, params, step: int = 0, overwrite: bool = False) -> str:
  """Writes `params` as T5X's checkpoint of `step` in `out_dir`; returns its directory.

  Orbax writes into a temporary directory and renames it when done: never half-written.
  """
  path = checkpoint_path(out_dir, step)
  if os.path.exists(path):
    if not overwrite:
      raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
  tree = {"target": jax.tree.map(np.asarray, params),
          "state": {"step": np.asarray(step, np.int32)}}
  options = ocp.CheckpointManagerOptions(step_prefix=STEP_PREFIX, create=True)
  with ocp.CheckpointManager(os.path.abspath(out_dir), options=options) as manager:
    if os.path.exists(path):
      manager.delete(step)
    manager.save(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.PyTreeSave(tree)}))
    manager.wait_until_finished()
  return path


def read_t5x_params(checkpoint_dir: str) -> dict:
  """The parameters ('target') of a T5X checkpoint directory `.../checkpoint_<step>`, as numpy."""
  state_dir = os.path.join(os.path.abspath(checkpoint_dir), STATE_ITEM)
  if not os.path.isdir(state_dir):
    raise FileNotFoundError(f"{checkpoint_dir}: no {STATE_ITEM}/ directory; expected a T5X "
                            "checkpoint directory checkpoint_<step> in the orbax layout")
  with ocp.PyTreeCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(state_dir).item_metadata.tree
    target = {"target": metadata["target"]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
        target, restore_args=restore_args, partial_restore=True))
  return restored["target"]
