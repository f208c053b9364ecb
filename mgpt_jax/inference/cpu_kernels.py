"""The CPU kernels of inference bundles, XLA FFI calls compiled on first use:

    cpu_kernels.register()                    # builds kernels/*.cc once (cached) and loads them
    y = cpu_kernels.int8_matmul(x, w, scale)  # x (..., K), w (N, K) int8, scale (N,)
    y = cpu_kernels.panel_matmul(x, panels, n)  # x (..., K), panels = to_panels(w (K, N))
    out = cpu_kernels.attention(q, k, v, bias)  # heads-major q, k, v; the mask in the bias
    token, lse = cpu_kernels.greedy_choice(logits)  # (N, V) -> first argmax, logsumexp

int8_matmul: XLA:CPU turns an int8 matrix into float32 before every dot, reading and writing
five times the bytes the int8 holds; the kernel converts each weight in registers instead, so
a decode step at batch 1 reads a quarter of float32's bytes.
panel_matmul: XLA:CPU runs each dot of a decode step on one thread; the kernel shares a
product's 48-column panels among the intra-op pool's threads and streams each panel
contiguously (README: generation benchmark).
attention: in XLA a decode step's attention is two batched dots of batch x heads tiny
products, each on one thread, and four softmax fusions, all over the whole cache (the encoder's:
YNNPACK fusions at 8 GFLOP/s); the kernel computes each (row, head, query) in one pass, shares
them among the pool's threads, and stops at the query's last unmasked key (the self-attention
cache past the current step, a prompt's padding are never read).
greedy_choice: XLA:CPU's reductions over a step's logits ran at about 3 ns a logit (a tenth of
the quickstart's model's step at batch 32); the kernel reads each row twice, 16 logits at a time.

All are compiled for this machine's CPU (-march=native) with the C++ compiler of $CXX (default
g++) against jaxlib's FFI headers, into $MGPT_JAX_CACHE (default ~/.cache/mgpt_jax)/kernels/
<hash of sources, flags, compiler, CPU>.
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
import numpy as np

# FFI target -> the handler symbol its source exports.
TARGETS = {"mgpt_int8_matmul": "MgptInt8Matmul", "mgpt_panel_matmul": "MgptPanelMatmul",
           "mgpt_attention": "MgptAttention", "mgpt_greedy_choice": "MgptGreedyChoice"}
INT8, PANELS, ATTENTION, GREEDY_CHOICE = TARGETS
KERNELS = os.path.join(os.path.dirname(__file__), "kernels")
SOURCES = tuple(os.path.join(KERNELS, name) for name in (
    "int8_matmul.cc", "panel_matmul.cc", "attention.cc", "greedy_choice.cc"))
HEADERS = tuple(os.path.join(KERNELS, name) for name in ("shared_tasks.h", "vector_exp.h"))
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC", "-shared", "-std=c++17", "-w")
PANEL = 48  # columns per panel (kernels/panel_matmul.cc)
_registered = False


class KernelUnavailable(RuntimeError):
  """The kernels cannot be built here (no C++ compiler, or the build failed)."""


def _cpu_id() -> str:
  """What -march=native compiles for: the CPU model and its feature flags."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      lines = [l for l in f if l.startswith(("model name", "flags"))]
    return "".join(sorted(set(lines)))
  except OSError:
    return platform.processor() or platform.machine()


def library_path() -> str:
  """The shared library for these sources, compiler and CPU (built if missing)."""
  compiler = os.environ.get("CXX", "g++")
  if shutil.which(compiler) is None:
    raise KernelUnavailable(f"CPU kernels: no C++ compiler {compiler!r} on PATH (set CXX); "
                            "bundles that use them need one to build them")
  sources = []
  for path in SOURCES + HEADERS:
    with open(path, "rb") as f:
      sources.append(f.read())
  version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
  key = hashlib.sha256(b"\0".join([*sources, " ".join(FLAGS).encode(), version.encode(),
                                   _cpu_id().encode(), jax.ffi.include_dir().encode()]))
  root = os.path.join(os.environ.get("MGPT_JAX_CACHE",
                                     os.path.join(os.path.expanduser("~"), ".cache", "mgpt_jax")),
                      "kernels", key.hexdigest()[:16])
  path = os.path.join(root, "libmgpt_kernels.so")
  if os.path.exists(path):
    return path
  os.makedirs(root, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=root)
  os.close(fd)
  done = subprocess.run([compiler, *FLAGS, "-I", jax.ffi.include_dir(), *SOURCES, "-o", tmp],
                        capture_output=True, text=True)
  if done.returncode:
    os.unlink(tmp)
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise KernelUnavailable(f"CPU kernels: {compiler} failed on {KERNELS}: {last}")
  os.replace(tmp, path)  # another process may have built it too: same bytes
  return path


def register() -> None:
  """Makes the TARGETS callable on CPU in this process (idempotent)."""
  global _registered
  if _registered:
    return
  library = ctypes.CDLL(library_path())
  for target, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform="cpu")
  _registered = True


def available() -> bool:
  try:
    register()
  except KernelUnavailable:
    return False
  return True


def _rows(x, k: int):
  lead = x.shape[:-1]
  return lead, x.reshape(math.prod(lead), k).astype(jnp.float32)


def int8_matmul(x, w, scale):
  """x (..., K) . (w (N, K) int8 * scale (N,))^T -> (..., N) float32; leading dims may be
  symbolic (jax.export)."""
  n, k = w.shape
  lead, rows = _rows(x, k)
  call = jax.ffi.ffi_call(INT8, jax.ShapeDtypeStruct((rows.shape[0], n), jnp.float32))
  return call(rows, w, scale.reshape(n).astype(jnp.float32)).reshape(*lead, n)


def to_panels(w: np.ndarray) -> np.ndarray:
  """(K, N) -> (ceil(N / 48), K, 48): 48-column blocks, each row-major, zero-padded past N."""
  k, n = w.shape
  w = np.pad(np.asarray(w, np.float32), ((0, 0), (0, -n % PANEL)))
  return np.ascontiguousarray(w.reshape(k, -1, PANEL).transpose(1, 0, 2))


def panel_matmul(x, panels, n: int):
  """x (..., K) . w (K, n) -> (..., n) float32, w given as to_panels(w)."""
  k = panels.shape[1]
  lead, rows = _rows(x, k)
  call = jax.ffi.ffi_call(PANELS, jax.ShapeDtypeStruct((rows.shape[0], n), jnp.float32))
  return call(rows, panels).reshape(*lead, n)


def attention(q, k, v, bias):
  """softmax(q . k^T + bias) . v per (row, head, query): q (B, H, Q, D), k and v (B, H, L, D),
  bias (1 or B, 1 or H, 1 or Q, L) float32 holding the mask as layers.NEG_INF -> (B, H, Q, D)
  float32; B may be symbolic (jax.export)."""
  f32 = lambda x: x.astype(jnp.float32)
  call = jax.ffi.ffi_call(ATTENTION, jax.ShapeDtypeStruct(q.shape, jnp.float32))
  return call(f32(q), f32(k), f32(v), f32(bias))


def greedy_choice(logits):
  """(first argmax (N,) int32, logsumexp (N,) float32) over the last axis of logits (N, V), as
  lm/sampling.py's argmax_and_logsumexp; N may be symbolic (jax.export)."""
  n = logits.shape[0]
  call = jax.ffi.ffi_call(GREEDY_CHOICE, (jax.ShapeDtypeStruct((n,), jnp.int32),
                                          jax.ShapeDtypeStruct((n,), jnp.float32)))
  return call(logits.astype(jnp.float32))
