"""A procedural synthetic motion dataset in the exact HumanML3D / KIT-ML layout.

    report = write_dataset(out_dir, num_motions=2000, seed=0)        # or dataset="kit"
    motion = generate_motion(index, seed, skeleton, actions=[("turn", {"side": "left"})])

Motions are 1-3 parametric actions (walk, run, jump, turn, wave, kick, squat,
sit_down, raise_arms, step_back, spin) with paraphrased captions that name every
action's direction, side and count; `synthetic_actions.jsonl` keeps the ground
truth so generated motions can be checked against what their caption says.
"""
from mgpt_jax.data.synthetic.actions import ACTION_NAMES
from mgpt_jax.data.synthetic.generator import (GENERATOR_VERSION, SIDECAR, ActionInstance,
                                               SynthReport, SyntheticMotion, generate_motion,
                                               split_ids, write_dataset)

__all__ = ["ACTION_NAMES", "GENERATOR_VERSION", "SIDECAR", "ActionInstance", "SynthReport",
           "SyntheticMotion", "generate_motion", "split_ids", "write_dataset"]
