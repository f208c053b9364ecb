"""T5X-style entry point of the built-in runner.

    python -m mgpt_jax.train --gin_file=gin/tokenizer.gin --gin.MODEL_DIR="'/tmp/vq'"

Flags: --gin_file (repeatable), --gin.NAME=VALUE and --gin_bindings=NAME=VALUE
(repeatable), --gin_search_paths=a,b. Gin files are looked up in the given
search paths, the current directory and this repository's gin/ directory.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

import gin

from mgpt_jax.training import distributed, runner

REPO_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


def parse_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
  """(gin files, bindings, search paths) from T5X-style flags."""
  files, bindings, paths = [], [], []
  for arg in argv:
    name, eq, value = arg.partition("=")
    if not eq:
      raise ValueError(f"flag {arg!r} has no value: expected --gin_file=F, --gin.NAME=VALUE, "
                       "--gin_bindings=NAME=VALUE or --gin_search_paths=P")
    if name == "--gin_file":
      files.append(value)
    elif name == "--gin_bindings":
      bindings.append(value)
    elif name.startswith("--gin."):
      bindings.append(f"{name[len('--gin.'):]}={value}")
    elif name == "--gin_search_paths":
      paths.extend(p for p in value.split(",") if p)
    else:
      raise ValueError(f"unknown flag {name!r}")
  if not files:
    raise ValueError("no --gin_file given")
  return files, bindings, paths


def parse_config(files, bindings, search_paths=()) -> None:
  for path in [*search_paths, REPO_GIN_DIR, os.getcwd()]:
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)


def run(argv: Sequence[str]):
  files, bindings, paths = parse_flags(argv)
  parse_config(files, bindings, paths)
  distributed.initialize()
  return gin.get_configurable(runner.train)()


def main(argv=None) -> int:
  run(sys.argv[1:] if argv is None else argv)
  return 0


if __name__ == "__main__":
  sys.exit(main())
