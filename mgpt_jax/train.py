"""T5X-style entry point of the built-in runner.

    python -m mgpt_jax.train --gin_file=gin/tokenizer.gin --gin.MODEL_DIR="'/tmp/vq'"

Flags: --gin_file (repeatable), --gin.NAME=VALUE and --gin_bindings=NAME=VALUE
(repeatable), --gin_search_paths=a,b. A gin file name is looked up in the current
directory, then the given search paths, then the shipped configs (mgpt_jax/gin_paths.py):
'gin/tokenizer.gin' and 'tokenizer.gin' both work from any directory, checkout or installed.

--dry_run: plan instead of train (mgpt_jax/training/planner.py: per-device memory, FLOPs and
fit on the mesh, compiled for simulated devices; its flags --devices=N, --mfu=F, ...).

Multi-process runs (T5X's flags; see mgpt_jax/training/distributed.py for the
environment variables they override): --coordinator_address=HOST:PORT,
--process_count=N, --process_index=I, and --multiprocess_gpu to start
jax.distributed even without them (jax then detects SLURM / Open MPI peers).

--verbose keeps TensorFlow's start-up messages and shows the traceback of an error.
Before any work the settings are checked: every --gin.MACRO=... must name a macro the
gin files use, step counts and batch sizes must be positive, and the global batch must
split evenly over the data-parallel devices and the processes.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import NamedTuple, Sequence

import gin

from mgpt_jax import console, errors, gin_paths


class Flags(NamedTuple):
  gin_files: list[str]
  gin_bindings: list[str]
  gin_search_paths: list[str]
  distributed: dict  # keyword arguments of distributed.initialize


def _int_flag(name: str, value: str) -> int:
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"flag {name}={value!r}: expected an integer") from None


def _bool_flag(name: str, value: str) -> bool:
  if value.lower() not in ("true", "1", "false", "0"):
    raise ValueError(f"flag {name}={value!r}: expected true or false")
  return value.lower() in ("true", "1")


def parse_flags(argv: Sequence[str]) -> Flags:
  """Gin files, bindings, search paths and distributed settings from T5X-style flags."""
  flags = Flags([], [], [], {})
  for arg in argv:
    name, eq, value = arg.partition("=")
    if arg in ("--multiprocess_gpu", "--nomultiprocess_gpu"):  # absl-style booleans
      flags.distributed["auto"] = arg == "--multiprocess_gpu"
      continue
    if not eq:
      raise ValueError(f"flag {arg!r} has no value: expected --gin_file=F, --gin.NAME=VALUE, "
                       "--gin_bindings=NAME=VALUE, --gin_search_paths=P, "
                       "--coordinator_address=HOST:PORT, --process_count=N, --process_index=I "
                       "or --multiprocess_gpu")
    if name == "--gin_file":
      flags.gin_files.append(value)
    elif name == "--gin_bindings":
      flags.gin_bindings.append(value)
    elif name.startswith("--gin."):
      flags.gin_bindings.append(f"{name[len('--gin.'):]}={value}")
    elif name == "--gin_search_paths":
      flags.gin_search_paths.extend(p for p in value.split(",") if p)
    elif name == "--multiprocess_gpu":
      flags.distributed["auto"] = _bool_flag(name, value)
    elif name == "--coordinator_address":
      flags.distributed["coordinator"] = value
    elif name == "--process_count":
      flags.distributed["num_processes"] = _int_flag(name, value)
    elif name == "--process_index":
      flags.distributed["process_id"] = _int_flag(name, value)
    else:
      raise errors.UserError(f"unknown flag {name!r}: expected --gin_file, --gin.NAME, "
                             "--gin_bindings, --gin_search_paths, --coordinator_address, "
                             "--process_count, --process_index, --multiprocess_gpu, --verbose "
                             "or --help")
  if not flags.gin_files:
    raise errors.UserError("no --gin_file given: expected e.g. --gin_file=gin/tokenizer_tiny.gin")
  return flags


class _QuietGinProbes(logging.Filter):
  """gin logs an ERROR for every search path it tries before the one that has the file."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found")


_QUIET_GIN_PROBES = _QuietGinProbes()


_ADDED_SEARCH_PATHS = set()  # gin keeps a global list; each path goes in once


def parse_config(files, bindings, search_paths=()) -> None:
  logging.getLogger().addFilter(_QUIET_GIN_PROBES)  # added once however often this runs
  for path in [*search_paths, *gin_paths.SEARCH_PATHS]:
    if path not in _ADDED_SEARCH_PATHS:
      _ADDED_SEARCH_PATHS.add(path)
      gin.add_config_file_search_path(path)
  for name in files:
    if not any(os.path.isfile(os.path.join(p, name))
               for p in ["", *search_paths, *gin_paths.SEARCH_PATHS]):
      raise errors.UserError(f"--gin_file={name}: file not found (searched the current "
                             f"directory, --gin_search_paths and {gin_paths.GIN_DIR})")
  gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)


def configure(argv: Sequence[str]) -> Flags:
  """Parses the flags and the gin files and bindings they name."""
  flags = parse_flags(argv)
  gin.clear_config()  # a fresh configuration per run, also when called in-process
  parse_config(flags.gin_files, flags.gin_bindings, flags.gin_search_paths)
  return flags


def train(flags: Flags):
  # Imported here so that --help and flag errors answer without loading jax.
  # pylint: disable-next=g-import-not-at-top
  from mgpt_jax.training import distributed, preflight, runner
  distributed.initialize(**flags.distributed)  # before gin's runner first touches a device
  preflight.check(flags.gin_bindings)  # refuses nonsense before any work
  return gin.get_configurable(runner.train)()


def run(argv: Sequence[str]):
  return train(configure(argv))


def main(argv=None) -> int:
  argv, verbose = errors.pop_verbose(sys.argv[1:] if argv is None else argv)
  console.quiet(verbose)
  if "--help" in argv or "-h" in argv:
    print(__doc__.strip())
    return 0
  if "--dry_run" in argv:  # the planner: compile for the mesh on simulated devices, no weights
    from mgpt_jax.training import planner  # pylint: disable=g-import-not-at-top
    return planner.main([a for a in argv if a != "--dry_run"])

  def command() -> int:
    run(argv)
    return 0
  return errors.run(command, verbose, prog="mgpt train")


if __name__ == "__main__":
  sys.exit(main())
