"""Reads plain-data pickles (the GloVe word list and index) without executing anything.

`pickle.load` runs whatever callables a file names, so a downloaded .pkl could run
code. This parser walks the opcodes with `pickletools.genops` and builds only lists,
dicts, tuples, str, int, float, bool and None; an opcode that would import, call or
build anything else is refused before it has any effect.
"""
from __future__ import annotations

import os
import pickletools

# Opcodes that only push constants.
_CONSTANTS = frozenset({
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",  # str
    "BINSTRING", "SHORT_BINSTRING", "STRING",  # Python 2 str, decoded as latin-1 by genops
    "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4",  # int (INT 00/01: bool)
    "BINFLOAT", "FLOAT",
})
_FIXED = {"NEWTRUE": True, "NEWFALSE": False, "NONE": None}
_IGNORED = frozenset({"PROTO", "FRAME"})


class _Malformed(Exception):
  pass


def loads(data: bytes, source: str = "<bytes>"):
  """The object a plain-data pickle holds; ValueError naming `source` for anything else."""
  stack: list = []
  marks: list[int] = []
  memo: dict[int, object] = {}

  def pop_mark() -> list:
    if not marks:
      raise _Malformed("no MARK before this opcode")
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items

  def pop(n: int = 1) -> list:
    if len(stack) < n or (marks and len(stack) - n < marks[-1]):
      raise _Malformed("stack underflow")
    items = stack[len(stack) - n:]
    del stack[len(stack) - n:]
    return items

  def top():
    if not stack:
      raise _Malformed("stack underflow")
    return stack[-1]

  def container(kind):
    obj = top()
    if not isinstance(obj, kind):
      raise _Malformed(f"expected a {kind.__name__} on the stack, found {type(obj).__name__}")
    return obj

  pos = 0
  name = "?"
  try:
    for opcode, arg, pos in pickletools.genops(data):
      name = opcode.name
      if name in _IGNORED:
        continue
      if name in _CONSTANTS:
        stack.append(arg)
      elif name in _FIXED:
        stack.append(_FIXED[name])
      elif name == "MARK":
        marks.append(len(stack))
      elif name == "EMPTY_LIST":
        stack.append([])
      elif name == "EMPTY_DICT":
        stack.append({})
      elif name == "EMPTY_TUPLE":
        stack.append(())
      elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        stack.append(tuple(pop(int(name[-1]))))
      elif name == "TUPLE":
        stack.append(tuple(pop_mark()))
      elif name == "LIST":
        stack.append(pop_mark())
      elif name == "DICT":
        items = pop_mark()
        if len(items) % 2:
          raise _Malformed("odd number of items for a dict")
        stack.append(dict(zip(items[::2], items[1::2])))
      elif name == "APPEND":
        (value,) = pop()
        container(list).append(value)
      elif name == "APPENDS":
        items = pop_mark()
        container(list).extend(items)
      elif name == "SETITEM":
        key, value = pop(2)
        container(dict)[key] = value
      elif name == "SETITEMS":
        items = pop_mark()
        if len(items) % 2:
          raise _Malformed("odd number of items for SETITEMS")
        target = container(dict)
        for key, value in zip(items[::2], items[1::2]):
          target[key] = value
      elif name == "MEMOIZE":
        memo[len(memo)] = top()
      elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = top()
      elif name in ("GET", "BINGET", "LONG_BINGET"):
        if arg not in memo:
          raise _Malformed(f"memo entry {arg} was never stored")
        stack.append(memo[arg])
      elif name == "STOP":
        if len(stack) != 1 or marks:
          raise _Malformed(f"{len(stack)} objects left on the stack at STOP")
        return stack[0]
      else:
        raise ValueError(
            f"{source}: refusing to execute pickle opcode {name} at byte {pos}: only plain "
            "lists, dicts, tuples, str, int, float, bool and None are read (a pickle that names "
            "classes or functions could run code)")
  except _Malformed as e:
    raise ValueError(f"{source}: malformed pickle at byte {pos} ({name}): {e}") from None
  except TypeError as e:  # e.g. an unhashable dict key
    raise ValueError(f"{source}: unsupported pickle content at byte {pos} ({name}): {e}") from None
  except ValueError as e:
    if str(e).startswith(f"{source}: "):
      raise
    raise ValueError(f"{source}: not a readable pickle (truncated or corrupt?): {e}") from None
  raise ValueError(f"{source}: not a readable pickle: it ends without a STOP opcode")


def load(path: str | os.PathLike):
  """`loads` of a file's bytes; errors name the file."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise ValueError(f"{path}: file not found") from None
  except OSError as e:
    raise ValueError(f"{path}: cannot read: {e}") from None
  return loads(data, source=path)
