"""One error policy for every command (`mgpt ...` and `python -m mgpt_jax.train`).

A bad input ends the command with one line on stderr that names the file, flag or value and
what was expected, and exit status 2. Anything else that escapes is a bug: one line with the
exception's type, exit status 1. Tracebacks only with --verbose (or MGPT_VERBOSE=1).
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Sequence

VERBOSE_FLAG = "--verbose"
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


class UserError(Exception):
  """A bad input: the message is one line naming the culprit and what was expected."""


# ValueError covers MotionDataError, BundleError and gin's parse errors; OSError covers
# missing files, gin's "Unable to open file", permissions and full disks; ImportError a gin
# file that imports a module this installation lacks (a T5X file given to our runner).
USER_ERRORS = (UserError, ValueError, OSError, ImportError)


def one_line(error: BaseException) -> str:
  """The first line of an error's message (gin appends "In call to configurable ..." lines)."""
  if isinstance(error, OSError) and error.filename and error.strerror:
    return f"{error.filename}: {error.strerror}"
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__


def pop_verbose(argv: Sequence[str]) -> tuple[list[str], bool]:
  """argv without --verbose, and whether it (or MGPT_VERBOSE=1) asked for tracebacks."""
  verbose = VERBOSE_FLAG in argv or os.environ.get("MGPT_VERBOSE", "") not in ("", "0")
  return [a for a in argv if a != VERBOSE_FLAG], verbose


def run(command: Callable[[], int], verbose: bool, prog: str = "mgpt") -> int:
  """Runs `command`, turning what escapes it into one line and an exit status."""
  try:
    return command()
  except USER_ERRORS as e:
    if verbose:
      traceback.print_exc()
    print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
    return EXIT_USER_ERROR
  except KeyboardInterrupt:
    print(f"{prog}: interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if verbose:
      traceback.print_exc()
    print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)} "
          f"(rerun with {VERBOSE_FLAG} for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL_ERROR
