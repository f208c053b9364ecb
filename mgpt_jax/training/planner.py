"""Dry-run planner: does a stage fit and shard on the hardware its gin files name?

    mgpt plan --gin_file=gin/runner/pretrain.gin --gin_file=gin/models/t5_xl.gin \\
        --gin_file=gin/hardware/lm_tpu_v4_32.gin [--gin.NAME=VALUE ...] [--devices=N] [--mfu=0.4]
    python -m mgpt_jax.train --dry_run ...   (the same)

The stage is built from gin as `runner.train` builds it (model, optimizer, partitioner,
micro-batches, Trainer), with abstract arrays only: the batch's shapes come from the input's
settings (its `batch_shapes`, no data is read) and the train state from jax.eval_shape. The
train step is lowered and compiled for the mesh on N simulated CPU devices, then the compiled
program's memory and cost analyses are read.

What is exact and what is an estimate:
- parameter, optimizer-state and batch bytes per device: exact, from shapes, dtypes and the
  shardings training uses;
- activations/temporaries: XLA's buffer assignment of the CPU-compiled program. A GPU or TPU
  compile fuses differently and keeps bf16 where the CPU backend may widen to f32, so this is
  an estimate of the accelerator's number (usually an over-estimate);
- FLOPs per device: the compiled program's (rematerialised recomputation included). The step
  time assumes the chip reaches --mfu of its dense bf16 peak on them; communication and input
  are not modelled.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import os
import re
import sys
import time
from typing import Any, Sequence

import gin
import jax

from mgpt_jax import atomic_io
from mgpt_jax.training import accelerators, runner
from mgpt_jax.training.partitioning import Partitioner
from mgpt_jax.training.trainer import Trainer

ACCELERATOR_MACRO = "ACCELERATOR"  # set by gin/hardware/*.gin
REPLICATED_SHARE = 0.01  # flag fully replicated tensors above this share of the state
# Gin settings the suggestions name (the built-in runner's and the T5 network's).
REMAT_SETTING = "--gin.lm_config.get_config.remat_policy=\"'full'\""
LAYER_SETTINGS = ("lm_config.get_config.num_encoder_layers",
                  "lm_config.get_config.num_decoder_layers")


@dataclasses.dataclass
class Stage:
  """What runner.train would build, minus data and weights."""
  model: Any
  optimizer: Any
  partitioner: Partitioner
  batch_spec: dict[str, jax.ShapeDtypeStruct]
  seed: int = 0
  microbatches: int = 1


def _gin_value(bound: dict, name: str, defaults: dict):
  # Copying a gin reference evaluates it (and only it): no other binding is touched.
  return copy.deepcopy(bound[name]) if name in bound else defaults[name]


def abstract_batch(reference) -> dict[str, jax.ShapeDtypeStruct]:
  """The global batch's shapes from the gin settings of runner.train's `train_data`."""
  cls = getattr(getattr(reference, "configurable", None), "wrapped", None)
  shapes_fn = getattr(cls, "batch_shapes", None)
  if shapes_fn is None:
    raise ValueError(f"runner.train.train_data ({cls or reference!r}) has no batch_shapes(): "
                     "the planner needs the batch's shapes without reading data")
  bound = gin.get_bindings(cls, resolve_references=False)
  init = inspect.signature(cls).parameters
  kwargs = {}
  for name, param in inspect.signature(shapes_fn).parameters.items():
    if name in bound:
      kwargs[name] = copy.deepcopy(bound[name])
    elif name in init and init[name].default is not inspect.Parameter.empty:
      kwargs[name] = init[name].default
    elif param.default is inspect.Parameter.empty:
      raise ValueError(f"{cls.__name__}.{name} is not bound in the gin config")
  return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in shapes_fn(**kwargs).items()}


def stage_from_gin() -> Stage:
  """The stage of the parsed gin config (see train.parse_config)."""
  bound = gin.get_bindings(runner.train, resolve_references=False)
  for name in ("model", "train_data", "optimizer"):
    if name not in bound:
      raise ValueError(f"the gin config binds no runner.train.{name}: is a stage file "
                       "(gin/tokenizer.gin, gin/runner/pretrain.gin, ...) among the --gin_file?")
  defaults = {n: p.default for n, p in inspect.signature(runner.train).parameters.items()}
  value = lambda name: _gin_value(bound, name, defaults)
  return Stage(value("model"), value("optimizer"), value("partitioner") or Partitioner(),
               abstract_batch(bound["train_data"]), value("seed"), value("microbatches"))


def mesh_devices(partitioner: Partitioner, devices: int | None) -> tuple[int, ...]:
  """The mesh shape with its -1 resolved for `devices` (required when the shape has a -1)."""
  shape = tuple(partitioner.mesh_shape)
  known = math.prod(s for s in shape if s != -1)
  if -1 not in shape:
    if devices is not None and devices != known:
      raise ValueError(f"--devices={devices}, but the mesh shape {shape} of "
                       f"partitioning.Partitioner.mesh_shape needs {known} devices")
    return shape
  if devices is None:
    raise ValueError(f"the mesh shape {shape} has a -1: pass --devices=N (the hardware's "
                     "device count) or a hardware gin file with a fixed mesh")
  if devices % known:
    raise ValueError(f"--devices={devices} does not divide into the mesh shape {shape}")
  return tuple(devices // known if s == -1 else s for s in shape)


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Tensor:
  name: str
  shape: tuple[int, ...]
  dtype: str
  spec: str
  global_bytes: int
  device_bytes: int
  replicated: bool  # one whole copy on every device of a mesh of several


@dataclasses.dataclass
class Plan:
  devices: int
  mesh: dict[str, int]
  rules: str
  microbatches: int
  remat_policy: str | None
  param_count: int
  param_bytes: int  # per device, from shapes and shardings
  optimizer_bytes: int
  other_state_bytes: int  # step counter, model state
  batch_bytes: int
  temp_bytes: int  # compiled: activations and temporaries
  output_extra_bytes: int  # compiled outputs not aliased to (donated) inputs
  compiled_argument_bytes: int
  flops: float  # per device per step
  positions: int  # global tokens (or frames) per step
  position_name: str
  compile_seconds: float
  state_global_bytes: int
  tensors: list[Tensor]  # every state tensor, largest first
  extrapolated_from: tuple[int, int] | None = None

  @property
  def total_bytes(self) -> int:
    return (self.param_bytes + self.optimizer_bytes + self.other_state_bytes + self.batch_bytes
            + self.temp_bytes + self.output_extra_bytes)

  def replicated_large(self) -> list[Tensor]:
    return [t for t in self.tensors
            if t.replicated and t.global_bytes > REPLICATED_SHARE * self.state_global_bytes]

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out["total_bytes"] = self.total_bytes
    out["tensors"] = out["tensors"][:10]
    out["replicated_large"] = [t.name for t in self.replicated_large()]
    out["flops_count_loop_trips"] = True
    return out


def _path_name(path) -> str:
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def _shard_bytes(x, sharding) -> int:
  return math.prod(sharding.shard_shape(x.shape)) * x.dtype.itemsize


def state_tensors(trainer: Trainer) -> list[Tensor]:
  leaves = jax.tree_util.tree_flatten_with_path(trainer.abstract_state)[0]
  shardings = jax.tree.leaves(trainer.state_shardings)
  several = trainer.partitioner.mesh.size > 1
  rows = [Tensor(_path_name(path), tuple(x.shape), str(x.dtype), str(s.spec),
                 math.prod(x.shape) * x.dtype.itemsize, _shard_bytes(x, s),
                 several and s.is_fully_replicated)
          for (path, x), s in zip(leaves, shardings)]
  return sorted(rows, key=lambda t: -t.global_bytes)


def _positions(batch_spec) -> tuple[int, str]:
  tokens = [v for k, v in batch_spec.items() if k.endswith("input_tokens")]
  if tokens:
    return sum(math.prod(v.shape) for v in tokens), "tokens"
  first = next(iter(batch_spec.values()))
  return math.prod(first.shape[:2]), "frames"


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}


def plan_stage(stage: Stage, compile_step: bool = True) -> Plan:
  """Compile the stage's train step for its mesh and read what it needs per device.

  compile_step=False: the exact state and batch bytes only (no compile; compiled fields 0).
  """
  start = time.time()
  trainer = Trainer(stage.model, stage.optimizer, stage.partitioner, stage.batch_spec,
                    stage.seed, stage.microbatches)
  compiled = trainer.lower_step().compile() if compile_step else None
  seconds = time.time() - start
  memory = compiled.memory_analysis() if compiled else None
  compiled_bytes = lambda name: int(getattr(memory, name)) if memory else 0
  tensors = state_tensors(trainer)
  kind = lambda t: t.name.split("/")[0]
  per_device = lambda k: sum(t.device_bytes for t in tensors if kind(t) == k)
  positions, position_name = _positions(stage.batch_spec)
  p = stage.partitioner
  return Plan(
      devices=p.mesh.size, mesh=dict(p.mesh.shape),
      rules=p.rules if isinstance(p.rules, str) else "custom",
      microbatches=stage.microbatches,
      remat_policy=getattr(getattr(stage.model, "config", None), "remat_policy", None),
      param_count=sum(math.prod(x.shape) for x in jax.tree.leaves(trainer.abstract_state.params)),
      param_bytes=per_device("params"), optimizer_bytes=per_device("opt_state"),
      other_state_bytes=per_device("step") + per_device("model_state"),
      batch_bytes=sum(_shard_bytes(v, trainer.batch_shardings[k])
                      for k, v in stage.batch_spec.items()),
      temp_bytes=compiled_bytes("temp_size_in_bytes"),
      output_extra_bytes=max(compiled_bytes("output_size_in_bytes")
                             - compiled_bytes("alias_size_in_bytes"), 0),
      compiled_argument_bytes=compiled_bytes("argument_size_in_bytes"),
      # XLA's cost analysis counts a loop body once: the micro-batch scan runs it k times (the
      # optimizer update outside it, elementwise and <0.1 % of the FLOPs, is counted k times too).
      flops=float(_cost(compiled).get("flops", 0.0)) * stage.microbatches if compiled else 0.0,
      positions=positions, position_name=position_name,
      compile_seconds=seconds if compiled else 0.0,
      state_global_bytes=sum(t.global_bytes for t in tensors), tensors=tensors)


def extrapolate(small: Plan, large: Plan, layers: tuple[int, int], full: Plan,
                full_layers: int) -> Plan:
  """`full`'s exact state with the compiled quantities (temporaries, FLOPs) extended linearly
  in the layer count from two compiles with fewer layers: every layer is the same unrolled
  program, so each adds a constant."""
  a, b = layers
  line = lambda x, y: int(round(x + (y - x) * (full_layers - a) / (b - a)))
  return dataclasses.replace(
      full, temp_bytes=line(small.temp_bytes, large.temp_bytes),
      output_extra_bytes=line(small.output_extra_bytes, large.output_extra_bytes),
      flops=float(line(small.flops, large.flops)),
      compile_seconds=small.compile_seconds + large.compile_seconds, extrapolated_from=layers)


# --------------------------------------------------------------------------- fit and report


def gib(n: float) -> str:
  return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


def step_seconds(plan: Plan, accelerator: accelerators.Accelerator, mfu: float) -> float:
  return plan.flops / (accelerator.peak_bf16_flops * mfu)


def fit_advice(plan: Plan, accelerator: accelerators.Accelerator, fraction: float) -> list[str]:
  """Empty when the plan fits; else the largest contributors and what would make it fit."""
  budget = accelerator.usable_bytes(fraction)
  if plan.total_bytes <= budget:
    return []
  parts = {"parameters": plan.param_bytes, "optimizer state": plan.optimizer_bytes,
           "activations/temporaries": plan.temp_bytes, "batch": plan.batch_bytes}
  top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
  lines = [f"does NOT fit {accelerator.name}: {gib(plan.total_bytes)} per device > "
           f"{gib(budget)} usable ({fraction:.0%} of {gib(accelerator.memory_bytes)}); largest: "
           + ", ".join(f"{name} {gib(n)}" for name, n in top)]
  data, model = plan.mesh.get("data", 1), plan.mesh.get("model", 1)
  state = plan.param_bytes + plan.optimizer_bytes
  if plan.rules == "data_parallel" and data > 1:
    lines.append(f"  try rules='fsdp' (--gin.partitioning.Partitioner.rules=\"'fsdp'\"): splits "
                 f"parameters and optimizer state over `data` too, about {gib(state / data)} "
                 f"instead of {gib(state)}")
  if plan.temp_bytes > budget / 3:
    need = plan.temp_bytes / max(budget - (plan.total_bytes - plan.temp_bytes), 1)
    k = 2 ** math.ceil(math.log2(max(need, 1.0) * plan.microbatches))
    lines.append(f"  try gradient accumulation (--gin.runner.train.microbatches={k}): "
                 f"activations shrink about {k // plan.microbatches}x, same update")
    if plan.remat_policy == "none":
      # XLA's CPU backend schedules the recomputation early, so its compile shows no saving;
      # GPU and TPU compiles do. Suggested, but this planner cannot confirm it.
      lines.append(f"  or activation remat ({REMAT_SETTING}): the backward pass keeps only each "
                   "layer's inputs (+~1/3 FLOPs; its saving does not show in a CPU compile)")
  if model < plan.devices and state > budget / 4:
    lines.append(f"  try a wider `model` axis: --gin.partitioning.Partitioner.mesh_shape="
                 f"\"({max(data // 2, 1)}, {model * 2})\" splits heads, mlp and vocab "
                 f"{model * 2} ways")
  lines.append("  then re-run the planner with the change to confirm")
  return lines


def format_report(plan: Plan, accelerator_name: str | None, fraction: float, mfu: float) -> str:
  mesh = " x ".join(f"{n} {a}" for a, n in plan.mesh.items())
  lines = [f"mesh {mesh} ({plan.devices} simulated CPU devices), rules '{plan.rules}', "
           f"micro-batches {plan.microbatches}, remat {plan.remat_policy or 'n/a'}; "
           f"{plan.param_count / 1e6:,.1f}M parameters; compiled in {plan.compile_seconds:.0f} s"]
  if plan.extrapolated_from:
    a, b = plan.extrapolated_from
    lines.append(f"temporaries and FLOPs extrapolated linearly from compiles with {a} and {b} "
                 "encoder+decoder layers; state bytes exact at full depth")
  rows = [("parameters", plan.param_bytes, "exact"), ("optimizer state", plan.optimizer_bytes,
                                                      "exact"),
          ("other state", plan.other_state_bytes, "exact"), ("batch", plan.batch_bytes, "exact"),
          ("activations/temporaries", plan.temp_bytes, "CPU-compiled estimate"),
          ("outputs not aliased", plan.output_extra_bytes, "compiled"),
          ("total", plan.total_bytes, "")]
  lines.append("\nper device")
  lines += [f"  {name:<25}{gib(n):>12}  {note}" for name, n, note in rows]
  lines.append(f"  FLOPs per step           {plan.flops:12.3e}  compiled, per device")
  lines.append("\nlargest parameters (optimizer moments take their parameter's sharding)")
  params = [t for t in plan.tensors if t.name.startswith("params/")][:10]
  lines += [f"  {t.name:<58}{str(t.shape):<18}{t.spec:<26}{gib(t.device_bytes):>11}"
            + ("  REPLICATED" if t.replicated else "") for t in params]
  flagged = plan.replicated_large()
  if flagged:
    share = sum(t.global_bytes for t in flagged) / plan.state_global_bytes
    lines.append(f"replicated on every device and over {REPLICATED_SHARE:.0%} of the state each: "
                 f"{len(flagged)} tensors, {share:.0%} of the state")
    lines += [f"  {t.name} {t.shape} {gib(t.global_bytes)}" for t in flagged[:10]]
    if len(flagged) > 10:
      lines.append(f"  ... and {len(flagged) - 10} more")
  else:
    lines.append(f"no tensor over {REPLICATED_SHARE:.0%} of the state is replicated")
  lines.append(f"\nthis per-device program on each chip, at MFU {mfu:.0%} of dense bf16 peak "
               f"(communication not modelled); fits = total <= {fraction:.0%} of memory")
  lines.append(f"  {'accelerator':<12}{'memory':>12}{'fits':>6}{'step':>10}"
               f"{plan.position_name + '/s':>14}")
  for a in accelerators.ACCELERATORS.values():
    seconds = step_seconds(plan, a, mfu)
    lines.append(f"  {a.name:<12}{gib(a.memory_bytes):>12}"
                 f"{'yes' if not fit_advice(plan, a, fraction) else 'NO':>6}"
                 f"{seconds * 1e3:>8.1f}ms{plan.positions / seconds:>14,.0f}")
  if accelerator_name:
    advice = fit_advice(plan, accelerators.get(accelerator_name), fraction)
    lines.append("")
    lines += advice or [f"fits {accelerator_name}: {gib(plan.total_bytes)} of "
                        f"{gib(accelerators.get(accelerator_name).usable_bytes(fraction))} "
                        "usable per device"]
  return "\n".join(lines)


# --------------------------------------------------------------------------- command line


@dataclasses.dataclass
class Options:
  devices: int | None = None
  mfu: float = 0.4
  accelerator: str | None = None
  memory_fraction: float = 0.9
  json: str | None = None
  extrapolate_layers: tuple[int, int] | None = None
  verbose: bool = False


def parse_options(argv: Sequence[str]) -> tuple[Options, list[str]]:
  """The planner's own flags; the rest are train.py's (--gin_file, --gin.NAME=VALUE, ...)."""
  options, rest = Options(), []
  for arg in argv:
    name, _, value = arg.partition("=")
    try:
      if name == "--devices":
        options.devices = int(value)
      elif name == "--mfu":
        options.mfu = float(value)
        if not 0 < options.mfu <= 1:
          raise ValueError
      elif name == "--accelerator":
        options.accelerator = accelerators.get(value).name
      elif name == "--memory_fraction":
        options.memory_fraction = float(value)
        if not 0 < options.memory_fraction <= 1:
          raise ValueError
      elif name == "--json":
        options.json = value
      elif name == "--extrapolate_layers":
        a, b = (int(v) for v in value.split(","))
        if not 0 < a < b:
          raise ValueError
        options.extrapolate_layers = (a, b)
      elif arg == "--verbose":
        options.verbose = True
      else:
        rest.append(arg)
    except ValueError as e:
      if "unknown accelerator" in str(e):
        raise
      raise ValueError(f"flag {arg!r}: expected --devices=N, --mfu=F in (0, 1], "
                       "--memory_fraction=F in (0, 1], --extrapolate_layers=A,B with 0<A<B, "
                       "--accelerator=NAME or --json=PATH") from None
  return options, rest


def _use_simulated_devices(count: int, argv: Sequence[str]) -> None:
  """`count` CPU devices: set before jax's backend starts, else re-run this process."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if not xla_bridge.backends_are_initialized():
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                   os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    jax.config.update("jax_platforms", "cpu")
  if len(jax.devices()) >= count:
    return
  if os.environ.get("MGPT_PLAN_REEXEC"):
    raise ValueError(f"could not get {count} simulated devices (have {len(jax.devices())})")
  os.environ["MGPT_PLAN_REEXEC"] = "1"
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.stdout.flush()
  os.execv(sys.executable, [sys.executable, "-m", "mgpt_jax.training.planner", *argv])


def _build(flags, extra_bindings=()) -> Stage:
  from mgpt_jax import train  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  train.parse_config(flags.gin_files, [*flags.gin_bindings, *extra_bindings],
                     flags.gin_search_paths)
  try:
    return stage_from_gin()
  except ValueError:
    raise
  except Exception as e:  # gin wraps whatever a configurable raised  pylint: disable=broad-except
    hint = (" (offline? plan without the vocabulary file: "
            "--gin.lm_config.get_config.vocab_size=32640)" if "model_rows" in str(e) else "")
    raise ValueError(f"building the stage from gin failed: {str(e).splitlines()[0]}{hint}") from e


def plan_from_flags(argv: Sequence[str]) -> tuple[Plan, Options, str | None]:
  from mgpt_jax import train  # pylint: disable=g-import-not-at-top
  options, rest = parse_options(argv)
  flags = train.parse_flags(rest)
  stage = _build(flags)
  shape = mesh_devices(stage.partitioner, options.devices)
  _use_simulated_devices(math.prod(shape), argv)
  accelerator = options.accelerator
  if accelerator is None:
    try:
      accelerator = accelerators.get(gin.query_parameter(f"%{ACCELERATOR_MACRO}")).name
    except ValueError as e:
      if "unknown accelerator" in str(e):
        raise
  with_shape = lambda s: dataclasses.replace(
      s, partitioner=dataclasses.replace(s.partitioner, mesh_shape=shape))
  if options.extrapolate_layers is None:
    return plan_stage(with_shape(stage)), options, accelerator
  config = getattr(stage.model, "config", None)
  layers = {getattr(config, "num_encoder_layers", None), getattr(config, "num_decoder_layers", None)}
  if len(layers) != 1 or None in layers:
    raise ValueError("--extrapolate_layers needs a T5 model with as many encoder as decoder layers")
  full_layers = layers.pop()
  plans = [plan_stage(with_shape(_build(flags, [f"{setting}={n}" for setting in LAYER_SETTINGS])))
           for n in options.extrapolate_layers]
  full = plan_stage(with_shape(stage), compile_step=False)
  return (extrapolate(*plans, options.extrapolate_layers, full, full_layers), options,
          accelerator)


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = "--verbose" in argv
  try:
    plan, options, accelerator = plan_from_flags(argv)
  except (ValueError, FileNotFoundError, IOError) as e:
    if verbose:
      raise
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(format_report(plan, accelerator, options.memory_fraction, options.mfu))
  chip = accelerators.get(accelerator) if accelerator else None
  fits = None if chip is None else not fit_advice(plan, chip, options.memory_fraction)
  if options.json:
    record = dict(plan.to_json(), accelerator=accelerator, mfu=options.mfu,
                  memory_fraction=options.memory_fraction, fits=fits)
    if chip is not None:
      seconds = step_seconds(plan, chip, options.mfu)
      record.update(step_seconds=seconds, positions_per_second=plan.positions / seconds)
    atomic_io.write_text(options.json, json.dumps(record, indent=1, default=str))
  return 2 if fits is False else 0


if __name__ == "__main__":
  sys.exit(main())
