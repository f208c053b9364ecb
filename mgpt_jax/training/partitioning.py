"""Device mesh and logical-axis partitioning (jax.jit + NamedSharding).

Parameters and activations carry logical axis names (T5X's: batch, embed, mlp,
heads, kv, joined_kv, vocab, length; the tokenizer's conv_window, conv_in,
conv_out); a rule set maps them onto the mesh axes `data` and `model`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

# Data parallel (+ tensor parallel over `model`): parameters are replicated along `data`.
DATA_PARALLEL_RULES = (
    ("batch", "data"),
    ("vocab", "model"), ("mlp", "model"), ("heads", "model"), ("joined_kv", "model"),
    ("kv", None), ("embed", None), ("length", None),
    ("conv_window", None), ("conv_in", None), ("conv_out", "model"),
)
# FSDP: parameters (and optimizer state) are also split along `data`, gathered per use.
# Order matters: flax gives a mesh axis to the first rule that claims it, so `batch` must
# precede `embed`, or activations (batch, length, embed) split `embed` and replicate `batch`.
FSDP_RULES = (("batch", "data"), ("embed", "data"), ("conv_in", "data")) + tuple(
    rule for rule in DATA_PARALLEL_RULES if rule[0] not in ("batch", "embed", "conv_in"))
RULE_SETS = {"data_parallel": DATA_PARALLEL_RULES, "fsdp": FSDP_RULES}


def create_mesh(mesh_shape: Sequence[int] = (-1, 1),
                axis_names: Sequence[str] = ("data", "model")) -> Mesh:
  """A mesh over the devices of all hosts.

  One -1 entry takes all devices left over; a shape without -1 uses the first
  prod(shape) devices (e.g. (1, 1) for a one-device reference run).
  """
  shape = list(mesh_shape)
  devices = jax.devices()
  known = math.prod(s for s in shape if s != -1)
  if shape.count(-1) > 1 or (-1 in shape and len(devices) % known) or known > len(devices):
    raise ValueError(f"mesh shape {tuple(mesh_shape)} does not fit {len(devices)} devices")
  shape = [len(devices) // known if s == -1 else s for s in shape]
  devices = devices[:math.prod(shape)]
  return Mesh(mesh_utils.create_device_mesh(shape, devices), tuple(axis_names))


@dataclasses.dataclass
class Partitioner:
  """The mesh and the rules; turns logical axis names into shardings."""
  mesh_shape: Sequence[int] = (-1, 1)
  rules: str | Sequence[tuple[str, str | None]] = "data_parallel"
  axis_names: Sequence[str] = ("data", "model")

  @functools.cached_property
  def mesh(self) -> Mesh:
    return create_mesh(self.mesh_shape, self.axis_names)

  @property
  def logical_rules(self):
    return RULE_SETS[self.rules] if isinstance(self.rules, str) else tuple(self.rules)

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def sharding(self, logical_axes, shape) -> NamedSharding:
    """Sharding of one array; a dimension the mesh axis does not divide stays whole."""
    if logical_axes is None:
      return self.replicated
    spec = nn.logical_to_mesh_axes(tuple(logical_axes), self.logical_rules)
    axes = []
    for dim, mesh_axis in zip(shape, spec):
      names = (mesh_axis,) if isinstance(mesh_axis, str) else (mesh_axis or ())
      size = math.prod(self.mesh.shape[n] for n in names)
      axes.append(mesh_axis if size > 1 and dim % size == 0 else None)
    return NamedSharding(self.mesh, P(*axes))

  def shardings(self, logical_tree, shape_tree):
    """Shardings of a tree of arrays from a same-structured tree of axis-name tuples."""
    return jax.tree.map(lambda axes, x: self.sharding(axes, x.shape), logical_tree, shape_tree,
                        is_leaf=lambda x: x is None or isinstance(x, (tuple, P)))

  def data_sharding(self, ndim: int) -> NamedSharding:
    """Leading (batch) dimension split over `data`."""
    return NamedSharding(self.mesh, P("data", *([None] * (ndim - 1))))

  def global_batch(self, local_batch: dict) -> dict:
    """A global jax.Array per entry from this process's rows of the batch."""
    return {k: jax.make_array_from_process_local_data(self.data_sharding(v.ndim), v)
            for k, v in host_arrays(local_batch).items()}

  @contextlib.contextmanager
  def context(self):
    """The mesh and rules that `nn.with_logical_constraint` inside models resolves against."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.logical_rules):
      yield


def host_arrays(batch: dict) -> dict:
  """numpy arrays in the 32-bit dtypes jax uses by default (int64 -> int32, float64 -> float32)."""
  narrow = {np.dtype(np.int64): np.int32, np.dtype(np.float64): np.float32}
  return {k: np.asarray(v).astype(narrow.get(np.asarray(v).dtype, np.asarray(v).dtype), copy=False)
          for k, v in batch.items()}
