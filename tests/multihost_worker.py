"""One process of tests/test_multihost.py: trains the tiny T5 and writes its losses as JSON.

    python tests/multihost_worker.py '{"devices": 2, "data": {...}, "out": ..., "runs": [...]}'

The spec (JSON): devices (CPU devices of this process), data ({"seqio_root": a synthetic
dataset with TOKENS/ and its trained SentencePiece model, "shards": how many processes'
shards one process joins}), out (a JSON file, written by process 0), coordinator /
num_processes / process_id (optional, for jax.distributed), compilation_cache (optional: a
directory for jax's persistent compilation cache) and runs: a list of {"model_dir",
"num_steps"}, trained in order; each run resumes from the latest checkpoint in its
model_dir. Process 0 also saves every run's final parameters as out + ".run{i}.npz".

The data is the stage-2 seqio pipeline: with several processes, each reads its own shard
through SeqioBatches; one process reads every shard itself and joins them (JoinedShards).
"""
import json
import os
import sys
import time

SPEC = json.loads(sys.argv[1])
# Before jax is imported: the CPU devices of this process.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={SPEC['devices']}"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import gin
import jax
import numpy as np
import seqio

import tasks  # registers the seqio tasks
from mgpt_jax.training import distributed, optimizers, runner, seqio_data
import test_multihost as t  # the test's data and model (tests/ is sys.path[0] here)


class CountingTokens:
  """Passes `data` through, noting this process's target tokens per step (1-based)."""

  def __init__(self, data):
    self.data, self.tokens = data, {}

  def batch(self, step: int, process_index: int, process_count: int) -> dict:
    batch = self.data.batch(step, process_index, process_count)
    self.tokens[str(step + 1)] = int(batch["decoder_loss_weights"].sum())
    return batch

  def save_assets(self, directory: str) -> None:
    self.data.save_assets(directory)


def seqio_batches(root: str, shards: int):
  """The train data (this process's shard, or all `shards` joined in one process)."""
  gin.parse_config([
      f"sources.locations.synthetic = '{root}'",
      "vocabulary.settings.sentencepiece_model = @vocabulary.dataset_sentencepiece()",
      f"vocabulary.dataset_sentencepiece.data_dir = '{root}'",
      f"vocabulary.dataset_sentencepiece.vocab_size = {t.SPM_VOCAB_SIZE}",
  ])
  if t.MIXTURE not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(t.MIXTURE, list(t.MIXTURE_TASKS), default_rate=1.0)

  def shard():
    return seqio_data.SeqioBatches(t.MIXTURE, t.FEATURE_LENGTHS, t.GLOBAL_BATCH, seed=t.DATA_SEED)

  if jax.process_count() > 1:
    return shard()
  # One data object per shard, kept for all runs: the joined batches are built once.
  return t.JoinedShards([shard() for _ in range(shards)])


def main() -> None:
  if SPEC.get("compilation_cache"):  # every compilation, however quick, is kept
    jax.config.update("jax_compilation_cache_dir", SPEC["compilation_cache"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  distributed.initialize(SPEC.get("coordinator"), SPEC.get("num_processes"),
                         SPEC.get("process_id"))
  data = seqio_batches(SPEC["data"]["seqio_root"], SPEC["data"]["shards"])
  vocab_size = tasks.vocabulary.model_rows()  # rows for the trained vocabulary
  results = {"process_count": jax.process_count(), "device_count": jax.device_count(),
             "vocab_size": vocab_size, "runs": []}
  for i, run in enumerate(SPEC["runs"]):
    start, train_data = time.time(), CountingTokens(data)
    state, summary = runner.train(
        model=t.tiny_model(vocab_size), train_data=train_data,
        optimizer=optimizers.adamw(1e-2), model_dir=run["model_dir"],
        num_steps=run["num_steps"], checkpoint_every=2, log_every=1, progress=False)
    train = {str(k): v for k, v in summary["train"].items()}
    results["runs"].append({
        "step": int(state.step), "seconds": time.time() - start,
        "loss": {k: float(v["loss"]) for k, v in train.items()},
        "target_tokens": {k: int(v["target_tokens"]) for k, v in train.items()},
        "local_target_tokens": {k: v for k, v in train_data.tokens.items() if k in train}})
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
