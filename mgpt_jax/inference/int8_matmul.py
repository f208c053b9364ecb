"""The CPU kernel of int8 bundles: y = x . (w * scale)^T with int8 w, as an XLA FFI call.

    int8_matmul.register()              # compiles kernels/int8_matmul.cc once (cached), loads it
    y = int8_matmul.matmul(x, w, scale)  # x (..., K) float32, w (N, K) int8, scale (N,)

XLA:CPU turns an int8 matrix into float32 before every dot, reading and writing five times
the bytes the int8 holds; the kernel converts each weight in registers instead, so a decode
step at batch 1 reads a quarter of float32's bytes. It is compiled for this machine's CPU
(-march=native) with the C++ compiler of $CXX (default g++) against jaxlib's FFI headers, into
$MGPT_JAX_CACHE (default ~/.cache/mgpt_jax)/kernels/<hash of source, flags, compiler, CPU>.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp

TARGET = "mgpt_int8_matmul"
SOURCE = os.path.join(os.path.dirname(__file__), "kernels", "int8_matmul.cc")
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC", "-shared", "-std=c++17", "-w")
_registered = False


class KernelUnavailable(RuntimeError):
  """The int8 kernel cannot be built here (no C++ compiler, or the build failed)."""


def _cpu_id() -> str:
  """What -march=native compiles for: the CPU model and its feature flags."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      lines = [l for l in f if l.startswith(("model name", "flags"))]
    return "".join(sorted(set(lines)))
  except OSError:
    return platform.processor() or platform.machine()


def library_path() -> str:
  """The shared library for this source, compiler and CPU (built if missing)."""
  compiler = os.environ.get("CXX", "g++")
  if shutil.which(compiler) is None:
    raise KernelUnavailable(f"int8 kernel: no C++ compiler {compiler!r} on PATH (set CXX); "
                            "int8 bundles need one to build their CPU kernel")
  with open(SOURCE, "rb") as f:
    source = f.read()
  version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
  key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                   _cpu_id().encode(), jax.ffi.include_dir().encode()]))
  root = os.path.join(os.environ.get("MGPT_JAX_CACHE",
                                     os.path.join(os.path.expanduser("~"), ".cache", "mgpt_jax")),
                      "kernels", key.hexdigest()[:16])
  path = os.path.join(root, "libmgpt_int8_matmul.so")
  if os.path.exists(path):
    return path
  os.makedirs(root, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=root)
  os.close(fd)
  done = subprocess.run([compiler, *FLAGS, "-I", jax.ffi.include_dir(), SOURCE, "-o", tmp],
                        capture_output=True, text=True)
  if done.returncode:
    os.unlink(tmp)
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise KernelUnavailable(f"int8 kernel: {compiler} failed on {SOURCE}: {last}")
  os.replace(tmp, path)  # another process may have built it too: same bytes
  return path


def register() -> None:
  """Makes TARGET callable on CPU in this process (idempotent)."""
  global _registered
  if _registered:
    return
  library = ctypes.CDLL(library_path())
  jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.MgptInt8Matmul),
                              platform="cpu")
  _registered = True


def available() -> bool:
  try:
    register()
  except KernelUnavailable:
    return False
  return True


def matmul(x, w, scale):
  """x (..., K) . (w (N, K) int8 * scale (N,))^T -> (..., N) float32; leading dims may be
  symbolic (jax.export)."""
  lead, (n, k) = x.shape[:-1], w.shape
  rows = math.prod(lead)
  call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((rows, n), jnp.float32))
  y = call(x.reshape(rows, k).astype(jnp.float32), w, scale.reshape(n).astype(jnp.float32))
  return y.reshape(*lead, n)
