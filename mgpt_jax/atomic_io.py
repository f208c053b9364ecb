"""Writes that are never seen half-done: write a temporary sibling, then rename."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from typing import Iterator

import numpy as np

from mgpt_jax.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds."""
  path = os.fspath(path)
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
  os.close(fd)
  os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, np.asarray(array), allow_pickle=False)


def write_text(path: str | os.PathLike, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary directory beside `path`, filled by the block, then swapped in whole.

  With overwrite an existing `path` is moved aside only once the new one is complete.
  """
  path = os.path.abspath(os.fspath(path))
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path}: already exists; pass overwrite to replace it")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
  os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the directory the usual permissions
  try:
    yield tmp
    if os.path.exists(path):
      old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".old", dir=parent)
      os.replace(path, os.path.join(old, "dir"))
      os.replace(tmp, path)
      shutil.rmtree(old)
    else:
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)


def file_sha256(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_output_dir(path: str | os.PathLike, overwrite: bool, markers: tuple[str, ...] = (),
                     flag: str = "--overwrite") -> None:
  """Refuses to write into a non-empty directory that holds none of mgpt's `markers`.

  A marker is a file name, or (name, text it contains). A directory with one was written by
  the same mgpt command before; anything else non-empty is the user's (e.g. a real dataset)
  and is only written into with `overwrite`.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"{path}: exists and is not a directory")
  if overwrite or not os.path.isdir(path) or not os.listdir(path):
    return
  if any(_has_marker(path, marker) for marker in markers):
    return
  raise UserError(f"{path}: directory is not empty and was not written by mgpt; refusing to "
                  f"write into it (pass {flag} to do so anyway)")


def _has_marker(directory: str, marker) -> bool:
  name, text = (marker, None) if isinstance(marker, str) else marker
  try:
    with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
      return text is None or text in f.read(4096)
  except OSError:
    return False


def check_not_input(out: str | os.PathLike, *inputs: str | os.PathLike) -> None:
  """Refuses an output path that is one of the inputs: it would be replaced while read."""
  for source in inputs:
    if source is not None and os.path.realpath(out) == os.path.realpath(source):
      raise UserError(f"{out}: the output is the input file; expected a different output path")
