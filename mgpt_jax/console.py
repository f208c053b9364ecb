"""A quiet console: TensorFlow's start-up chatter is hidden unless asked for (`--verbose`).

TensorFlow prints its CUDA probing ("Could not find cuda drivers", "failed call to cuInit"),
oneDNN and CPU-feature notices from C++ before any log level applies, so the only way to hide
them is to point file descriptor 2 elsewhere while TensorFlow loads and probes its devices.
`quiet()` arranges that for the first `import tensorflow`, whenever a command gets there, so
commands that never need TensorFlow do not pay for loading it. A failed import still raises.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Loads tensorflow (and probes its devices) with stderr silenced, on its first import."""

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    with _stderr_silenced():
      tf = importlib.import_module("tensorflow")
      tf.config.list_physical_devices()  # the CUDA probe prints here, not at import
    return importlib.util.spec_from_loader(name, self)

  def create_module(self, spec):
    return sys.modules[spec.name]

  def exec_module(self, module):
    pass


def quiet(verbose: bool = False) -> None:
  """Hides TensorFlow's start-up messages from here on (keeps them when `verbose`)."""
  if verbose:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if "tensorflow" in sys.modules:
    return
  if not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlow())
