"""Checks of a parsed gin configuration that refuse nonsense before any work starts.

A typo in a macro (--gin.TRAIN_STEP=5) would otherwise define a macro nobody reads; a
non-positive step count would end at once with no checkpoint; a batch that does not split
over the data-parallel devices would fail only after the data is loaded and the step compiled.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

import gin
import jax

from mgpt_jax.errors import UserError

# Parameters of any configurable that must be integers >= 1 when bound.
POSITIVE_INTS = ("num_steps", "batch_size")
# Parameters holding a global batch: split over the mesh's `data` axis and over processes.
GLOBAL_BATCHES = ("batch_size",)
_MACRO = "gin.macro"
_DEPTH = 16


def _config() -> dict:
  return gin.config._CONFIG  # pylint: disable=protected-access


def _macro_name(value) -> str | None:
  if (isinstance(value, gin.config.ConfigurableReference)
      and value.scoped_selector.endswith("/" + _MACRO)):
    return value.scoped_selector[:-len(_MACRO) - 1]  # "NAME/gin.macro": the scope is the name
  return None


def _macros_defined() -> dict[str, Any]:
  return {scope: args.get("value") for (scope, selector), args in _config().items()
          if selector.endswith(_MACRO)}


def _macros_used() -> set[str]:
  return {name for name in map(_macro_name, gin.config.iterate_references(_config())) if name}


def resolve(value) -> tuple[Any, list[str]]:
  """A bound value with macro references followed, and the macros followed on the way."""
  defined, chain = _macros_defined(), []
  for _ in range(_DEPTH):
    name = _macro_name(value)
    if name is None or name not in defined:
      break
    chain.append(name)
    value = defined[name]
  return value, chain


def check_macro_flags(bindings: Sequence[str]) -> None:
  """Every macro set on the command line must be one the gin files read."""
  used = _macros_used()
  for binding in bindings:
    name = binding.partition("=")[0].strip()
    if "." in name or "/" in name or name in used:
      continue  # parameter bindings are checked by gin itself
    close = difflib.get_close_matches(name, sorted(used), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UserError(f"--gin.{name}: no gin file uses the macro {name}{hint}")


def _bound(parameters: Sequence[str]):
  """(selector.parameter, resolved value, macros followed) of every binding of `parameters`."""
  for (scope, selector), args in _config().items():
    if selector.endswith(_MACRO):
      continue
    for name, value in args.items():
      if name in parameters:
        resolved, chain = resolve(value)
        short = ".".join(selector.split(".")[-2:])  # module.configurable, as the gin files name it
        where = f"{scope + '/' if scope else ''}{short}.{name}"
        yield where, resolved, chain


def _describe(where: str, value, chain: list[str]) -> str:
  return f"{chain[0]} = {value!r} ({where})" if chain else f"{where} = {value!r}"


def check_positive() -> None:
  for where, value, chain in _bound(POSITIVE_INTS):
    if isinstance(value, gin.config.ConfigurableReference):
      continue  # computed at call time
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise UserError(f"{_describe(where, value, chain)}: expected an integer >= 1")


def data_parallel_size() -> int:
  """Size of the mesh's `data` axis as the Partitioner bindings and this machine's devices give."""
  shape, names = (-1, 1), ("data", "model")
  for (_, selector), args in _config().items():
    if selector.endswith("Partitioner"):
      shape = resolve(args.get("mesh_shape", shape))[0]
      names = resolve(args.get("axis_names", names))[0]
  shape, names = list(shape), list(names)
  if "data" not in names:
    return 1
  devices = jax.device_count()
  known = math.prod(s for s in shape if s != -1)
  return devices // known if shape[names.index("data")] == -1 else shape[names.index("data")]


def check_batches() -> None:
  data, processes = data_parallel_size(), jax.process_count()
  for where, value, chain in _bound(GLOBAL_BATCHES):
    if not isinstance(value, int):
      continue
    for parts, what in ((data, f"the {data} data-parallel devices"),
                        (processes, f"the {processes} processes")):
      if parts > 1 and value % parts:
        raise UserError(f"{_describe(where, value, chain)}: the global batch must split evenly "
                        f"over {what}; expected a multiple of {parts}")


def check(flag_bindings: Sequence[str]) -> None:
  check_macro_flags(flag_bindings)
  check_positive()
  check_batches()
