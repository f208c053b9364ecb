"""Stage-2/3 input pipeline throughput against the rate at which the T5 train step consumes it.

    python tools/bench_input.py [--mixtures pretrain,instruct] [--batch 32] [--size small]
        [--inputs 256 --targets 256] [--pack] [--processes N]
        [--data-dir DIR --dataset humanml3d --sentencepiece spiece.model]

The peer is the trainer measured in the same run: for each mixture, SeqioBatches(...).dataset()
is read in steady state (after --skip rows, so that every task of the mixture has filled its
shuffle buffer; the time to the first batch, which includes building the seqio graph, is reported
apart), then a Trainer
(adamw, one data-parallel mesh over the local devices) runs the T5 of --size on batches of the
same shape (compile and --warmup steps excluded). The ratio is
    pipeline rows/s / (train steps/s x batch rows)
how many times faster the input is made than the model eats it: > 1 means the input is not the
bottleneck. Rows are the batch's sequences (with --pack, each row holds several examples).
With --processes N, one more row per mixture reads shard 0 of N (ShardInfo(0, N)) into local
batches of batch/N rows, against what one host needs at this machine's step rate.

Both are timed alone; in a real run they share the host's cores (the runner prefetches two
batches while the step runs). Without --data-dir, a synthetic dataset (--num-motions) is
written to a temporary directory with FAKE stage-1 tokens (random codes < 512, one per 4
frames), and a small SentencePiece model is trained on its captions as gin/tasks/synthetic.gin
does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import gin
import jax
import numpy as np

import tasks  # noqa: F401  (registers the mixtures)
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.data.synthetic.stand_in_tokens import write_stand_in_tokens
from mgpt_jax.lm.config import get_config
from mgpt_jax.models.t5_model import EncoderDecoderModel
from mgpt_jax.training import optimizers
from mgpt_jax.training.partitioning import Partitioner, host_arrays
from mgpt_jax.training.seqio_data import SeqioBatches
from mgpt_jax.training.trainer import Trainer
from tasks import registry, sources, vocabulary

START = time.perf_counter()
FAKE_CODES = 512  # the stage-1 codebook size
STEPS = {"tiny": 10}  # timed train steps by size; 2 for the others (tens of seconds each)


def progress(message: str) -> None:
  print(f"[{time.perf_counter() - START:6.1f}s] {message}", flush=True)


def synthetic_dataset(root: str, num_motions: int) -> int:
  """A synthetic dataset with random stand-in tokens for every entry of every split."""
  write_dataset(root, num_motions, seed=0, progress=False)
  written = write_stand_in_tokens(root, FAKE_CODES, frames_per_token=sources.FRAMES_PER_TOKEN)
  return sum(len(entries) for entries in written.values())


def bind_data(dataset: str, root: str, sentencepiece: str | None) -> None:
  bindings = [f"sources.locations.{dataset} = '{root}'"]
  if sentencepiece:
    bindings.append(f"vocabulary.settings.sentencepiece_model = '{sentencepiece}'")
  else:
    bindings += ["vocabulary.settings.sentencepiece_model = @vocabulary.dataset_sentencepiece()",
                 f"vocabulary.dataset_sentencepiece.data_dir = '{root}'"]
  gin.parse_config(bindings)


def bench_pipeline(name: str, lengths: dict, batch: int, pack: bool, process_count: int,
                   skip_rows: int, batches: int) -> dict:
  """Time to the first batch and steady-state rate of shard 0 of `process_count`."""
  start = time.perf_counter()
  data = SeqioBatches(name, lengths, batch, pack=pack)
  stream = data.dataset(0, process_count).prefetch(2).as_numpy_iterator()
  first = next(stream)
  first_s = time.perf_counter() - start
  for _ in range(-(-skip_rows // len(first["encoder_input_tokens"]))):
    next(stream)
  start = time.perf_counter()
  seen = [next(stream) for _ in range(batches)]
  seconds = time.perf_counter() - start
  rows = sum(len(b["encoder_input_tokens"]) for b in seen)
  if pack:  # segment ids count 1, 2, ... along a row: the row's largest is its example count
    examples = sum(int(b["decoder_segment_ids"].max(axis=1).sum()) for b in seen)
  else:
    examples = rows
  fill = [np.mean([(b[k] > 0).mean() for b in seen])
          for k in ("encoder_input_tokens", "decoder_target_tokens")]
  return {"first_s": first_s, "batches_per_s": batches / seconds, "rows_per_s": rows / seconds,
          "examples_per_s": examples / seconds, "fill": fill,
          "local_batch": len(first["encoder_input_tokens"]), "batch": first}


def bench_trainer(size: str, vocab_rows: int, local_batch: dict, warmup: int, steps: int) -> dict:
  """Median seconds per train step on this batch (compile and warm-up excluded)."""
  batch = host_arrays(local_batch)
  rows = len(batch["encoder_input_tokens"])
  devices = jax.local_device_count() if rows % jax.local_device_count() == 0 else 1
  partitioner = Partitioner((devices, 1))
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  model = EncoderDecoderModel(get_config(size, vocab_size=vocab_rows))
  start = time.perf_counter()
  trainer = Trainer(model, optimizers.adamw(1e-4), partitioner, spec)
  holder = {"state": trainer.init_state()}
  params = sum(x.size for x in jax.tree.leaves(trainer.abstract_state.params))
  progress(f"trainer: T5 {size}, {params / 1e6:.1f}M parameters, initialised in "
           f"{time.perf_counter() - start:.1f} s; compiling the train step")
  batch = partitioner.global_batch(batch)

  def step() -> float:
    begin = time.perf_counter()
    holder["state"], metrics = trainer.train_step(holder["state"], batch)
    jax.block_until_ready(metrics)
    return time.perf_counter() - begin

  compile_s = step()
  progress(f"trainer: compile + first step {compile_s:.1f} s; {warmup} warm-up and {steps} timed "
           "steps")
  for _ in range(warmup):
    step()
  times = []
  for i in range(steps):
    times.append(step())
    progress(f"trainer: step {i + 1}/{steps} {times[-1]:.2f} s")
  seconds = statistics.median(times)
  return {"compile_s": compile_s, "step_s": seconds, "steps_per_s": 1 / seconds,
          "params": params, "mesh": (devices, 1)}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--mixtures", default="pretrain,instruct",
                      help="comma-separated: pretrain, instruct (mgpt_<dataset>_<mixture>)")
  parser.add_argument("--batch", type=int, default=32, help="global batch (rows)")
  parser.add_argument("--inputs", type=int, default=256, help="inputs feature length")
  parser.add_argument("--targets", type=int, default=256, help="targets feature length")
  parser.add_argument("--pack", action="store_true", help="pack examples into rows (seqio)")
  parser.add_argument("--processes", type=int, default=1,
                      help="also read shard 0 of N, as one of N hosts does")
  parser.add_argument("--size", default="small", choices=("tiny", "small", "base"))
  parser.add_argument("--vocab-rows", type=int, default=None,
                      help="model embedding rows (default: the vocabulary's, rounded to 128; "
                           "32640 is T5's)")
  parser.add_argument("--skip", type=int, default=256,
                      help="rows read after the first batch, before timing")
  parser.add_argument("--batches", type=int, default=30, help="timed batches per pipeline")
  parser.add_argument("--warmup", type=int, default=1, help="train steps after the compiling one")
  parser.add_argument("--steps", type=int, default=None,
                      help="timed train steps (default: 10 for tiny, 2 otherwise)")
  parser.add_argument("--data-dir", default=None,
                      help="dataset root with TOKENS/ (default: a synthetic one in a temp dir)")
  parser.add_argument("--dataset", default="synthetic", choices=sorted(registry.DATASETS))
  parser.add_argument("--sentencepiece", default=None,
                      help="SentencePiece model (default: a small one trained on the training "
                           "captions, into <data dir>/spm/)")
  parser.add_argument("--num-motions", type=int, default=300, help="synthetic dataset size")
  args = parser.parse_args()
  if args.processes < 1 or args.batch % args.processes:
    parser.error(f"--batch {args.batch} must split evenly over --processes {args.processes}")
  mixtures = args.mixtures.split(",")
  if not set(mixtures) <= {"pretrain", "instruct"}:
    parser.error(f"--mixtures: expected some of pretrain, instruct; got {args.mixtures!r}")
  if args.dataset != "synthetic" and not args.data_dir:
    parser.error(f"--dataset {args.dataset} needs --data-dir")
  steps = args.steps or STEPS.get(args.size, 2)
  print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}", flush=True)

  with tempfile.TemporaryDirectory() as temp:
    if args.data_dir:
      root = args.data_dir
      data_note = f"{args.dataset} at {root} (its TOKENS/)"
    else:
      root = os.path.join(temp, "synthetic")
      progress(f"writing a synthetic dataset of {args.num_motions} motions to {root}")
      entries = synthetic_dataset(root, args.num_motions)
      data_note = (f"synthetic, {args.num_motions} motions = {entries} entries, FAKE stage-1 "
                   f"tokens (random codes < {FAKE_CODES}, length // {sources.FRAMES_PER_TOKEN})")
    bind_data(args.dataset, root, args.sentencepiece)
    start = time.perf_counter()
    vocab = vocabulary.resolve()
    vocab_rows = args.vocab_rows or vocabulary.model_rows()
    progress(f"vocabulary: {vocab.vocab_size} ids from {vocabulary.settings()[0]} "
             f"({time.perf_counter() - start:.2f} s); model rows {vocab_rows}")

    lengths = {"inputs": args.inputs, "targets": args.targets}
    counts = [1] + ([args.processes] if args.processes > 1 else [])
    rows = []
    for mixture in mixtures:
      name = registry.task_name(args.dataset, mixture)
      for count in counts:
        progress(f"pipeline: {name}, shard 0 of {count}, batch {args.batch // count}")
        r = bench_pipeline(name, lengths, args.batch, args.pack, count, args.skip, args.batches)
        rows.append((name, count, r))
        progress(f"pipeline: first batch {r['first_s']:.1f} s, then {r['rows_per_s']:.0f} rows/s")
    model = bench_trainer(args.size, vocab_rows, rows[0][2]["batch"], args.warmup, steps)

  print(f"\ndata: {data_note}")
  print(f"features: inputs {args.inputs}, targets {args.targets}, pack {args.pack}; global batch "
        f"{args.batch}; pipeline timed over {args.batches} batches after the first "
        f"and {args.skip} rows")
  print(f"trainer: T5 {args.size} ({model['params'] / 1e6:.1f}M parameters, {vocab_rows} vocab "
        f"rows), adamw, mesh {model['mesh']}: compile + first step {model['compile_s']:.1f} s, "
        f"{model['step_s']:.2f} s/step (median of {steps}) = {model['steps_per_s']:.3f} steps/s "
        f"= {model['steps_per_s'] * args.batch:.1f} rows/s")
  print(f"load average now {os.getloadavg()[0]:.1f} (other processes on these cores slow both)")
  print("\nmixture                    hosts batch  first  batches/s   rows/s  examples/s  "
        "fill in/tgt  model needs   ratio")
  for name, count, r in rows:
    needs = model["steps_per_s"] * r["local_batch"]
    ratio = r["rows_per_s"] / needs
    fill = "/".join(f"{f:.2f}" for f in r["fill"])
    print(f"{name:26} {count:5} {r['local_batch']:5} {r['first_s']:5.1f}s "
          f"{r['batches_per_s']:10.2f} {r['rows_per_s']:8.1f} {r['examples_per_s']:11.1f}  "
          f"{fill:>11}  {needs:6.2f} rows/s {ratio:6.1f}x {'ok' if ratio > 1 else 'INPUT-BOUND'}")


if __name__ == "__main__":
  main()
