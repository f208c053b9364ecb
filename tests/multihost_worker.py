"""One process of tests/test_multihost.py: trains the tiny T5 and writes its losses as JSON.

    python tests/multihost_worker.py '{"devices": 2, "out": ..., "runs": [...], ...}'

The spec (JSON): devices (CPU devices of this process), out (a JSON file, written
by process 0), coordinator / num_processes / process_id (optional, for
jax.distributed) and runs: a list of {"model_dir", "num_steps"}, trained in
order; each run resumes from the latest checkpoint in its model_dir. Process 0
also saves every run's final parameters as out + ".run{i}.npz".
"""
import json
import os
import sys

SPEC = json.loads(sys.argv[1])
# Before jax is imported: the CPU devices of this process.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={SPEC['devices']}"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

from mgpt_jax.training import distributed, optimizers, runner
import test_multihost  # the test's data and model (tests/ is sys.path[0] here)


def main() -> None:
  distributed.initialize(SPEC.get("coordinator"), SPEC.get("num_processes"),
                         SPEC.get("process_id"))
  results = {"process_count": jax.process_count(), "device_count": jax.device_count(),
             "runs": []}
  for i, run in enumerate(SPEC["runs"]):
    state, summary = runner.train(
        model=test_multihost.tiny_model(), train_data=test_multihost.GlobalBatches(),
        optimizer=optimizers.adamw(1e-2), model_dir=run["model_dir"],
        num_steps=run["num_steps"], checkpoint_every=2, log_every=1, progress=False)
    results["runs"].append({"step": int(state.step),
                            "loss": {str(k): float(v["loss"]) for k, v in summary["train"].items()}})
    # Parameters are replicated (data parallel, model axis 1): every process holds all of them.
    params = jax.device_get(state.params)
    if jax.process_index() == 0:
      flat = {jax.tree_util.keystr(path): np.asarray(leaf)
              for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
      np.savez(f"{SPEC['out']}.run{i}.npz", **flat)
  if jax.process_index() == 0:
    with open(SPEC["out"], "w") as f:
      json.dump(results, f)


if __name__ == "__main__":
  main()
