"""Stage-1 train-step throughput and achieved FLOP/s against this machine's matmul peak.

    python tools/bench_tokenizer.py [--tiny] [--batch 32] [--steps 10]

The peer is a large matmul measured in the same run: the printed ratio is the
fraction of the machine's attainable matmul FLOP/s that a VQ-VAE train step reaches.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax.models.vq_model import VQModel
from mgpt_jax.tokenizer.vqvae import VQConfig
from mgpt_jax.training import optimizers
from mgpt_jax.training.partitioning import Partitioner
from mgpt_jax.training.trainer import Trainer


def _time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile and warm up
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def matmul_peak(n: int, dtype) -> float:
  a = jnp.ones((n, n), dtype)
  matmul = jax.jit(lambda x: x @ x)
  return 2 * n**3 / _time(lambda: matmul(a), 5)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--tiny", action="store_true", help="the tests' tiny model")
  parser.add_argument("--batch", type=int, default=32, help="global batch of 64-frame windows")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--matmul", type=int, default=2048, help="size of the peak matmul")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  args = parser.parse_args()

  config = VQConfig(num_codes=64, code_dim=32, width=32, depth=2) if args.tiny else VQConfig()
  config = VQConfig(**{**config.to_dict(), "dtype": args.dtype})
  partitioner = Partitioner()
  spec = {"motion": jax.ShapeDtypeStruct((args.batch, 64, config.nfeats), np.float32)}
  trainer = Trainer(VQModel(config), optimizers.adamw(1e-4), partitioner, spec)
  state = trainer.init_state()
  batch = partitioner.global_batch(
      {"motion": np.random.default_rng(0).normal(size=spec["motion"].shape).astype(np.float32)})
  with partitioner.context():
    compiled = trainer._step_jit.lower(state, batch).compile()  # pylint: disable=protected-access
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0))
  memory = compiled.memory_analysis()

  holder = {"state": state}

  def step():
    holder["state"], metrics = trainer.train_step(holder["state"], batch)
    return metrics["loss"]

  seconds = _time(step, args.steps)
  peak = matmul_peak(args.matmul, jnp.dtype(args.dtype))
  achieved = flops / seconds
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"model: {'tiny' if args.tiny else 'full (19.4M params)'}, {args.dtype}, "
        f"batch {args.batch} x 64 frames")
  print(f"train step: {seconds * 1e3:.1f} ms, {args.batch * 64 / seconds:,.0f} frames/s, "
        f"{flops / 1e9:.2f} GFLOP/step (XLA cost analysis)")
  if memory is not None:
    print(f"device memory per step: arguments {memory.argument_size_in_bytes / 2**20:,.0f} MiB "
          f"(state + batch), temporaries {memory.temp_size_in_bytes / 2**20:,.0f} MiB")
  print(f"achieved {achieved / 1e9:.1f} GFLOP/s; matmul peak {peak / 1e9:.1f} GFLOP/s "
        f"({args.matmul}^2 {args.dtype}); ratio {achieved / peak:.2f}")


if __name__ == "__main__":
  main()
