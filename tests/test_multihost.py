"""Multi-process training on one machine: jax.distributed over localhost CPU processes.

Two processes with 2 CPU devices each must train exactly like one process with
4 devices (same mesh shape, same global batch), and the checkpoint they write
together must restore in one process. The data is the stage-2 seqio pipeline
(SeqioBatches on a mixture of the `tasks` package, one shard per process) on a small
synthetic dataset; the one-process reference reads both shards itself and joins them.
The workers are tests/multihost_worker.py.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mgpt_jax import train
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.data.synthetic.stand_in_tokens import write_stand_in_tokens
from mgpt_jax.lm.config import get_config
from mgpt_jax.models.t5_model import EncoderDecoderModel
from mgpt_jax.training import distributed

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
WORKER = os.path.join(TESTS, "multihost_worker.py")
# A guard against a hung worker, not a speed goal: beside other work a 2-core machine took over
# 240 s.
TIMEOUT_S = 600
# The data: a two-task stage-2 mixture (quick to build) on a small synthetic dataset.
GLOBAL_BATCH = 8
MIXTURE = "multihost_two_tasks"
MIXTURE_TASKS = ("mgpt_synthetic_t2m", "mgpt_synthetic_motion_span")
FEATURE_LENGTHS = {"inputs": 64, "targets": 64}
SPM_VOCAB_SIZE, NUM_CODES, DATA_SEED = 300, 128, 0


def tiny_model(vocab_size: int) -> EncoderDecoderModel:
  return EncoderDecoderModel(get_config("tiny", vocab_size=vocab_size))


class JoinedShards:
  """One process's stand-in for several: batch(step) joins what each of `shards` (e.g.
  SeqioBatches) gives as process i of len(shards) along the batch axis, process 0's rows
  first, as jax.make_array_from_process_local_data lays out the processes' rows.

  One data object per shard, so that each keeps its own stream (one object asked for
  alternating shards would rebuild its pipeline at every call). The joined batches are kept:
  a pure function of the step, they are built once for all the runs of a worker.
  """

  def __init__(self, shards: list):
    self.shards = list(shards)
    self._batches = {}

  def batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
    if (process_index, process_count) != (0, 1):
      raise ValueError("JoinedShards is the whole global batch: for one process only")
    if step not in self._batches:
      parts = [s.batch(step, i, len(self.shards)) for i, s in enumerate(self.shards)]
      self._batches[step] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return self._batches[step]

  def save_assets(self, directory: str) -> None:
    self.shards[0].save_assets(directory)


# ---------------------------------------------------------------- flags and environment


def test_flags_parse_t5x_distributed_settings():
  flags = train.parse_flags(["--gin_file=a.gin", "--coordinator_address=10.0.0.1:1234",
                             "--process_count=4", "--process_index=3", "--multiprocess_gpu"])
  assert flags.gin_files == ["a.gin"]
  assert flags.distributed == {"coordinator": "10.0.0.1:1234", "num_processes": 4,
                               "process_id": 3, "auto": True}
  assert train.parse_flags(["--gin_file=a.gin"]).distributed == {}
  for arg, auto in (("--multiprocess_gpu=false", False), ("--multiprocess_gpu=1", True),
                    ("--nomultiprocess_gpu", False)):
    assert train.parse_flags(["--gin_file=a.gin", arg]).distributed == {"auto": auto}
  with pytest.raises(ValueError, match="--process_count='two'"):
    train.parse_flags(["--gin_file=a.gin", "--process_count=two"])
  with pytest.raises(ValueError, match="--multiprocess_gpu='maybe'"):
    train.parse_flags(["--gin_file=a.gin", "--multiprocess_gpu=maybe"])


def test_resolve_flags_over_environment():
  env = {"MGPT_COORDINATOR": "host:1", "MGPT_NUM_PROCESSES": "2", "MGPT_PROCESS_ID": "1"}
  assert distributed.resolve(environ={}) is None
  assert distributed.resolve(environ=env) == distributed.Settings("host:1", 2, 1)
  assert distributed.resolve("other:2", 8, 5, environ=env) == distributed.Settings("other:2", 8, 5)
  assert distributed.resolve(environ={"MGPT_DISTRIBUTED": "auto"}) == distributed.Settings(
      auto=True)
  # --multiprocess_gpu=false wins over MGPT_DISTRIBUTED=auto.
  assert distributed.resolve(auto=False, environ={"MGPT_DISTRIBUTED": "auto"}) is None
  # With auto, jax detects what is left out.
  assert distributed.resolve("host:1", auto=True, environ={}) == distributed.Settings(
      "host:1", auto=True)


@pytest.mark.parametrize("kwargs, environ, message", [
    ({"coordinator": "host:1"}, {}, r"--process_count \(or MGPT_NUM_PROCESSES\) is not"),
    ({"coordinator": "host:1", "num_processes": 2}, {},
     r"--process_index \(or MGPT_PROCESS_ID\) is not"),
    ({}, {"MGPT_COORDINATOR": "host:1", "MGPT_PROCESS_ID": "0"},
     r"--process_count \(or MGPT_NUM_PROCESSES\) is not"),
    ({"num_processes": 2}, {}, r"--coordinator_address \(or MGPT_COORDINATOR\) is not"),
    ({}, {"MGPT_PROCESS_ID": "1"}, r"--coordinator_address \(or MGPT_COORDINATOR\) is not"),
    ({"coordinator": "host", "num_processes": 2, "process_id": 0}, {}, "expected host:port"),
    ({"coordinator": "host:1", "num_processes": 2, "process_id": 2}, {}, "0 <= index < 2"),
    ({"coordinator": "host:1", "num_processes": 0, "process_id": 0}, {}, "at least 1"),
    ({}, {"MGPT_COORDINATOR": "host:1", "MGPT_NUM_PROCESSES": "x", "MGPT_PROCESS_ID": "0"},
     "MGPT_NUM_PROCESSES='x' is not an integer"),
    ({}, {"MGPT_DISTRIBUTED": "yes"}, "MGPT_DISTRIBUTED='yes'"),
])
def test_resolve_rejects_incomplete_settings(kwargs, environ, message):
  with pytest.raises(ValueError, match=message):
    distributed.resolve(**kwargs, environ=environ)


def test_initialize_without_settings_is_single_process(monkeypatch):
  for name in ("MGPT_COORDINATOR", "MGPT_NUM_PROCESSES", "MGPT_PROCESS_ID", "MGPT_DISTRIBUTED"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False


# ---------------------------------------------------------------- two processes


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_workers(specs: list[dict], logs: str) -> None:
  """Runs one worker per spec at once; on any failure kills all and shows their stderr."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(("MGPT_", "XLA_", "JAX_"))}
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
  procs = []
  for i, spec in enumerate(specs):
    with open(f"{logs}.{i}.log", "wb") as log:
      procs.append(subprocess.Popen([sys.executable, WORKER, json.dumps(spec)], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT))
  deadline = time.time() + TIMEOUT_S
  try:
    while any(p.poll() is None for p in procs):
      if time.time() > deadline or any(p.returncode not in (None, 0) for p in procs):
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  codes = [p.returncode for p in procs]
  if codes != [0] * len(procs):
    output = "\n".join(f"--- worker {i} (exit {c}):\n" + open(f"{logs}.{i}.log").read()[-6000:]
                       for i, c in enumerate(codes))
    pytest.fail(f"workers failed or timed out after {TIMEOUT_S} s: exit codes {codes}\n{output}")


def _params(path: str) -> dict:
  with np.load(path) as f:
    return dict(f)


@pytest.fixture(scope="module")
def seqio_root(tmp_path_factory) -> str:
  """A small synthetic dataset with stand-in TOKENS/ for every entry and its SentencePiece
  model, trained here once so that the workers only read it."""
  import tasks  # pylint: disable=import-outside-toplevel  (registers the seqio tasks)

  root = str(tmp_path_factory.mktemp("multihost") / "synthetic")
  write_dataset(root, 40, seed=0, progress=False, workers=1)
  write_stand_in_tokens(root, NUM_CODES)
  tasks.vocabulary.dataset_sentencepiece(root, SPM_VOCAB_SIZE)
  return root


def test_two_processes_train_like_one_and_checkpoint_restores_in_one(seqio_root, tmp_path):
  data = {"seqio_root": seqio_root, "shards": 2}
  multi_dir, single_dir = str(tmp_path / "multi"), str(tmp_path / "single")
  multi_out, single_out = str(tmp_path / "multi.json"), str(tmp_path / "single.json")
  address = f"localhost:{_free_port()}"
  # 2 processes x 2 devices, each reading its shard: 3 steps, checkpoints at 2 and 3 written
  # by both into one directory.
  _run_workers([{"devices": 2, "data": data, "out": multi_out, "coordinator": address,
                 "num_processes": 2, "process_id": i,
                 "runs": [{"model_dir": multi_dir, "num_steps": 3}]}
                for i in range(2)], str(tmp_path / "multi"))
  # 1 process x 4 devices reading both shards: the reference to step 4, then the two-process
  # checkpoint restored (to step 3, no training) and continued to step 4. (A compilation cache
  # spares the last run compiling the first run's train step again.)
  _run_workers([{"devices": 4, "data": data, "out": single_out,
                 "compilation_cache": str(tmp_path / "jax_cache"),
                 "runs": [{"model_dir": single_dir, "num_steps": 4},
                          {"model_dir": multi_dir, "num_steps": 3},
                          {"model_dir": multi_dir, "num_steps": 4}]}], str(tmp_path / "single"))
  with open(multi_out) as f:
    multi = json.load(f)
  with open(single_out) as f:
    single = json.load(f)
  assert (multi["process_count"], multi["device_count"]) == (2, 4)
  assert (single["process_count"], single["device_count"]) == (1, 4)
  assert multi["vocab_size"] == single["vocab_size"] > SPM_VOCAB_SIZE + 512

  reference, two_process = single["runs"][0], multi["runs"][0]
  restored, resumed = single["runs"][1], single["runs"][2]
  assert sorted(two_process["loss"]) == ["1", "2", "3"]
  # The same global batches: the shards joined in one process are what the two processes read.
  for step in "123":
    assert two_process["target_tokens"][step] == reference["target_tokens"][step], step
  # ... and a loss normalised per process would differ: process 0's rows hold more or fewer
  # than half of the global batch's target tokens.
  assert any(2 * two_process["local_target_tokens"][s] != two_process["target_tokens"][s]
             for s in "123"), two_process
  np.testing.assert_allclose([two_process["loss"][s] for s in "123"],
                             [reference["loss"][s] for s in "123"], rtol=0, atol=1e-5)
  # The restored state is exactly what the two processes saved; training goes on as if unbroken.
  # (a run's summary keeps the history of the runs it resumes)
  assert restored["step"] == 3 and sorted(restored["loss"]) == ["1", "2", "3"]
  saved, loaded = _params(multi_out + ".run0.npz"), _params(single_out + ".run1.npz")
  assert saved.keys() == loaded.keys()
  for name, value in saved.items():
    np.testing.assert_array_equal(loaded[name], value, err_msg=name)
  assert resumed["step"] == 4 and sorted(resumed["loss"]) == ["1", "2", "3", "4"]
  np.testing.assert_allclose(resumed["loss"]["4"], reference["loss"]["4"], rtol=0, atol=1e-5)
  print("losses, 2 processes x 2 devices:", two_process["loss"],
        "resumed in 1 process:", resumed["loss"])
  print("losses, 1 process x 4 devices:  ", reference["loss"])
  print("seconds per run: 2 processes", [r["seconds"] for r in multi["runs"]],
        "1 process", [r["seconds"] for r in single["runs"]])
