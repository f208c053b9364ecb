"""Kill test: SIGKILL a tiny training run at random moments, restart it, compare bit for bit.

    python tools/kill_test.py                 # 20 kills
    python tools/kill_test.py --kills 3 --json out.json

A tiny stage-1 run (the real runner, orbax's asynchronous checkpoints every 2 steps) is
started as a child process and killed with SIGKILL after a random delay, drawn up to the
duration of an uninterrupted run, so kills land in start-up, in steps and in checkpoint
writes. The run is restarted in the same model_dir until it finishes; a finished run starts a
new round in a fresh directory, until --kills kills are done. Each round's final parameters,
optimizer and model state, and its summary.json losses, must equal those of the
uninterrupted reference run bit for bit. Last, a copy of the finished reference run has its
latest checkpoint truncated and is run again: it must report the checkpoint, fall back to the
previous one and end bit-identical too.

Children are forked from this process after its imports (jax's backend is not started before
the fork) and share jax's persistent compilation cache, so a restart costs neither an
interpreter start with jax and TensorFlow nor a compile.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Imported before any fork; none of them starts jax's backend.
from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=wrong-import-position
from mgpt_jax.data.windows import WindowBatches  # pylint: disable=wrong-import-position
from mgpt_jax.models.vq_model import VQModel  # pylint: disable=wrong-import-position
from mgpt_jax.tokenizer.vqvae import VQConfig  # pylint: disable=wrong-import-position
from mgpt_jax.training import optimizers, runner  # pylint: disable=wrong-import-position
from mgpt_jax.training.checkpoints import Checkpoints  # pylint: disable=wrong-import-position
from mgpt_jax.training.partitioning import Partitioner  # pylint: disable=wrong-import-position

TINY = VQConfig(num_codes=16, code_dim=8, width=16, depth=1)
CHECKPOINT_EVERY = 2


def train_tiny(model_dir: str, data_dir: str, steps: int):
  """One tiny run to `steps`, resuming from what model_dir holds: (state, summary)."""
  return runner.train(
      model=VQModel(TINY), train_data=WindowBatches(data_dir, batch_size=4, window=32),
      optimizer=optimizers.adamw(1e-3), model_dir=model_dir, num_steps=steps,
      partitioner=Partitioner((1, 1)),  # one device, whatever XLA_FLAGS says
      checkpoint_every=CHECKPOINT_EVERY, log_every=CHECKPOINT_EVERY, progress=False)


def _start(model_dir: str, data_dir: str, steps: int, stderr_path: str | None = None) -> int:
  pid = os.fork()
  if pid == 0:  # the child never returns into the parent's code
    code = 1
    try:
      if stderr_path:
        os.dup2(os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
      train_tiny(model_dir, data_dir, steps)
      code = 0
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
    finally:
      os._exit(code)  # pylint: disable=protected-access
  return pid


def _wait(pid: int) -> int:
  return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _ended_within(pid: int, seconds: float) -> bool:
  """Whether the child ended (successfully) within `seconds`; it is left running if not."""
  deadline = time.perf_counter() + seconds
  while time.perf_counter() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {pid} failed")
      return True
    time.sleep(0.005)
  return False


def _writes_in_flight(model_dir: str) -> bool:
  """Whether a checkpoint write was under way: orbax's temporary directories are present."""
  return bool(glob.glob(os.path.join(model_dir, "checkpoints", "*tmp*")))


def _final_state(model_dir: str, steps: int) -> list[np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top  # only after every fork
  checkpoints = Checkpoints(model_dir)
  try:
    assert checkpoints.latest_step() == steps, (model_dir, checkpoints.latest_step())
    return [np.asarray(x) for x in jax.tree.leaves(checkpoints.restore(None, steps))]
  finally:
    checkpoints.close()


def _losses(model_dir: str) -> dict:
  with open(os.path.join(model_dir, runner.SUMMARY), encoding="utf-8") as f:
    summary = json.load(f)
  return {step: values["loss"] for step, values in summary["train"].items()}


def _share_compilations(cache_dir: str) -> None:
  """jax's persistent compilation cache: the reference run compiles, restarts load."""
  import jax  # pylint: disable=g-import-not-at-top  # config only: the backend stays unstarted
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def kill_test(kills: int, steps: int, workdir: str, seed: int) -> dict:
  rng = random.Random(seed)
  _share_compilations(os.path.join(workdir, "jax_cache"))
  data_dir = os.path.join(workdir, "data")
  write_dataset(data_dir, 12, seed=0, progress=False, workers=1)

  reference = os.path.join(workdir, "reference")
  if _wait(_start(reference, data_dir, steps)) != 0:  # it fills the compilation cache
    raise RuntimeError("the uninterrupted reference run failed")
  # A second uninterrupted run, as warm as every restart: its duration bounds the kill delays.
  tick = time.perf_counter()
  if _wait(_start(os.path.join(workdir, "warm"), data_dir, steps)) != 0:
    raise RuntimeError("the second uninterrupted run failed")
  duration = time.perf_counter() - tick

  record = {"kills": 0, "kills_during_checkpoint_write": 0, "restarts": 0, "rounds": 0,
            "identical_rounds": 0, "steps": steps, "run_seconds": round(duration, 2),
            "kill_steps": []}
  while record["kills"] < kills:
    record["rounds"] += 1
    model_dir = os.path.join(workdir, f"round_{record['rounds']}")
    while True:
      pid = _start(model_dir, data_dir, steps)
      if record["kills"] >= kills:  # all kills done: let this restart finish the round
        if _wait(pid) != 0:
          raise RuntimeError(f"the restarted run in {model_dir} failed")
        break
      if _ended_within(pid, rng.uniform(0, duration)):
        break  # it finished before its kill: the round is complete
      os.kill(pid, signal.SIGKILL)
      _wait(pid)
      record["kills"] += 1
      record["kills_during_checkpoint_write"] += _writes_in_flight(model_dir)
      record["kill_steps"].append(_committed_step(model_dir))
      record["restarts"] += 1
  # A finished run whose latest checkpoint is truncated: reported, the previous one is used.
  truncated = os.path.join(workdir, "truncated")
  shutil.copytree(reference, truncated, ignore=shutil.ignore_patterns(".lock"))
  _truncate_files(os.path.join(truncated, "checkpoints", str(steps)))
  log = os.path.join(workdir, "truncated.stderr")
  if _wait(_start(truncated, data_dir, steps, stderr_path=log)) != 0:
    raise RuntimeError(f"the run with a truncated checkpoint failed; see {log}")
  with open(log, encoding="utf-8", errors="replace") as f:
    record["truncated_reported"] = "is unreadable" in f.read()

  # Compared only now: reading a checkpoint starts jax's backend, and no fork may follow that.
  rounds = [os.path.join(workdir, f"round_{r}") for r in range(1, record["rounds"] + 1)]
  record["identical_rounds"] = sum(_same(reference, d, steps) for d in rounds)
  record["warm_run_identical"] = _same(reference, os.path.join(workdir, "warm"), steps)
  record["truncated_recovered"] = _same(reference, truncated, steps)
  record["identical"] = (record["identical_rounds"] == record["rounds"]
                        and record["warm_run_identical"])
  return record


def _truncate_files(directory: str) -> None:
  """Halves every file of a checkpoint, as a full disk or a lost write would leave it."""
  for parent, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(parent, name)
      if os.path.getsize(path) > 64:
        os.truncate(path, os.path.getsize(path) // 2)


def _committed_step(model_dir: str) -> int:
  """The newest committed checkpoint step (0 when none): orbax's finished step directories."""
  names = os.listdir(os.path.join(model_dir, "checkpoints")) if os.path.isdir(
      os.path.join(model_dir, "checkpoints")) else []
  return max((int(n) for n in names if n.isdigit()), default=0)


def _same(reference: str, model_dir: str, steps: int) -> bool:
  expected, actual = _final_state(reference, steps), _final_state(model_dir, steps)
  same_state = len(expected) == len(actual) and all(
      a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
      for a, b in zip(expected, actual))
  same_losses = _losses(reference) == _losses(model_dir)
  if not (same_state and same_losses):
    print(f"{model_dir}: differs from the uninterrupted run in "
          + " and ".join(what for what, same in (("its final state", same_state),
                                                 ("its summary.json losses", same_losses))
                         if not same), file=sys.stderr)
  return same_state and same_losses


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--steps", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
  parser.add_argument("--workdir", default=None, help="default: a temporary directory")
  parser.add_argument("--json", default=None, help="also write the figures here")
  args = parser.parse_args(argv)
  workdir = args.workdir or tempfile.mkdtemp(prefix="mgpt_kill_test.")
  record = kill_test(args.kills, args.steps, workdir, args.seed)
  print(f"kills {record['kills']} ({record['kills_during_checkpoint_write']} during a checkpoint "
        f"write), restarts {record['restarts']}, rounds {record['rounds']}, "
        f"bit-identical rounds {record['identical_rounds']}/{record['rounds']}; "
        f"uninterrupted warm run {record['run_seconds']} s for {record['steps']} steps; "
        f"committed step at each kill {record['kill_steps']}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(record, f, indent=1)
  print(f"truncated latest checkpoint: reported {record['truncated_reported']}, recovered "
        f"bit-identical {record['truncated_recovered']}")
  ok = record["identical"] and record["truncated_reported"] and record["truncated_recovered"]
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
