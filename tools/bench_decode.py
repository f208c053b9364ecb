"""Greedy decoding and train-step speed of our Flax T5 against transformers' PyTorch T5 on CPU.

    python tools/bench_decode.py [--sizes small,base] [--repeats 3] [--threads 2]

Both models hold the same random weights (a transformers T5 v1.1 converted with
hf_convert.from_hf), so they compute the same function; the max abs logit difference
is printed first. Decoding: 51 new tokens from a 32-token prompt, EOS ignored by both
(HF: min_new_tokens = max_new_tokens; ours: ignore_eos), batch 1 and 32. Training:
forward + backward of the cross-entropy, source 256 / target 64, batch 8. Timings are
medians of --repeats runs after a warm-up; goals are printed beside the ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from mgpt_jax.lm import decoding, hf_convert
from mgpt_jax.lm.t5 import Transformer

VOCAB = 32128
SIZES = {  # d_model, d_ff, heads, layers (encoder = decoder); head_dim 64
    "small": (512, 1024, 6, 8),
    "base": (768, 2048, 12, 12),
}
PROMPT, NEW_TOKENS = 32, 51
GOALS = {("decode", 1): 5.0, ("decode", 32): 3.0, ("train", 8): 1.5}


def hf_model(size: str):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  d_model, d_ff, heads, layers = SIZES[size]
  torch.manual_seed(0)
  config = transformers.T5Config(
      vocab_size=VOCAB, d_model=d_model, d_kv=64, d_ff=d_ff, num_layers=layers,
      num_decoder_layers=layers, num_heads=heads, feed_forward_proj="gated-gelu",
      tie_word_embeddings=False, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
      eos_token_id=1)
  model = transformers.T5ForConditionalGeneration(config).eval()
  state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  ours_config, params = hf_convert.from_hf(model.config.to_dict(), state)
  params = jax.tree.map(jnp.asarray, params)
  return model, Transformer(ours_config.replace(dropout_rate=0.0)), params


def median_time(fn, repeats: int) -> float:
  fn()  # warm-up (and compilation)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def prompts(batch: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(2, VOCAB, (batch, PROMPT)).astype(np.int32)


def check_parity(model, module, params) -> float:
  """Max |logit difference| on the benchmark's prompt and a teacher-forced target."""
  import torch  # pylint: disable=g-import-not-at-top
  enc = prompts(4)
  dec_in = np.concatenate([np.zeros((4, 1), np.int32), prompts(4, 1)[:, :NEW_TOKENS - 1]], 1)
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(enc, dtype=torch.long),
                decoder_input_ids=torch.tensor(dec_in, dtype=torch.long)).logits.numpy()
  ours = module.apply({"params": params}, enc, dec_in, np.ones_like(dec_in), enable_dropout=False)
  return float(np.abs(np.asarray(ours) - ref).max())


def bench_decode(model, module, params, batch: int, repeats: int) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  enc = prompts(batch)
  enc_t = torch.tensor(enc, dtype=torch.long)

  def hf():
    with torch.inference_mode():
      return model.generate(input_ids=enc_t, attention_mask=enc_t > 0, do_sample=False,
                            num_beams=1, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)

  decoder = decoding.Decoder(module, max_decode_length=NEW_TOKENS, ignore_eos=True)
  enc_j = jnp.asarray(enc)
  ours = lambda: jax.block_until_ready(decoder(params, enc_j))
  same = np.mean(np.asarray(ours().tokens) == hf()[:, 1:].numpy())
  t_hf, t_ours = median_time(hf, repeats), median_time(ours, repeats)
  return {"hf": batch * NEW_TOKENS / t_hf, "ours": batch * NEW_TOKENS / t_ours,
          "same_tokens": same, "unit": "tok/s", "ms_hf": 1e3 * t_hf / NEW_TOKENS,
          "ms_ours": 1e3 * t_ours / NEW_TOKENS, "decoder": decoder, "enc": enc_j}


def bench_train(model, module, params, batch: int, repeats: int) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(2)
  enc = rng.integers(2, VOCAB, (batch, 256)).astype(np.int32)
  target = rng.integers(2, VOCAB, (batch, 64)).astype(np.int32)
  dec_in = np.concatenate([np.zeros((batch, 1), np.int32), target[:, :-1]], 1)

  def loss_fn(p, e, d, t):
    logits = module.apply({"params": p}, e, d, t, enable_dropout=False)
    logp = jax.nn.log_softmax(logits, -1)
    return -jnp.mean(jnp.take_along_axis(logp, t[..., None], -1))

  step = jax.jit(jax.value_and_grad(loss_fn))
  args = [jnp.asarray(x) for x in (enc, dec_in, target)]
  ours = lambda: jax.block_until_ready(step(params, *args))
  model.train()
  enc_t, target_t = (torch.tensor(x, dtype=torch.long) for x in (enc, target))

  def hf():
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=enc_t, attention_mask=enc_t > 0, labels=target_t).loss
    loss.backward()
    return loss

  losses = float(hf().detach()), float(ours()[0])
  t_hf, t_ours = median_time(hf, repeats), median_time(ours, repeats)
  model.zero_grad(set_to_none=True)
  model.eval()
  cost = step.lower(params, *args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  gflop = float(cost.get("flops", 0.0)) / 1e9
  return {"hf": 1 / t_hf, "ours": 1 / t_ours, "losses": losses, "unit": "step/s",
          "ms_hf": 1e3 * t_hf, "ms_ours": 1e3 * t_ours, "gflop": gflop}


def profile_decode(params, decoder, enc, top: int = 8) -> None:
  """Our decode's most expensive XLA ops per step (thread time, from a jax.profiler trace)."""
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  names = {}
  for line in decoder.lower(params, enc).compile().as_text().splitlines():
    found = re.match(r"\s*(?:ROOT )?%([\w.-]+) = (\S+) ([\w-]+)\(", line)
    if found:
      op = re.search(r'op_name="([^"]+)"', line)
      where = "/".join(op.group(1).split("/")[-2:]) if op else found.group(3)
      names.setdefault(found.group(1), f"{found.group(2)} {where}")
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    jax.block_until_ready(decoder(params, enc))
    jax.profiler.stop_trace()
    trace = jax.profiler.ProfileData.from_file(
        glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
  total = collections.Counter()
  for plane in trace.planes:
    for line in plane.lines:
      if line.name.startswith("tf_XLAEigen"):  # XLA:CPU's worker threads
        for event in line.events:
          if not event.name.startswith(("ThunkExecutor", "end:", "SlinkyThreadPool")):
            total[event.name] += event.duration_ns / 1e6 / NEW_TOKENS
  print(f"    ours, batch {enc.shape[0]}: {sum(total.values()):.2f} thread-ms per step; top ops:")
  for name, ms in total.most_common(top):
    print(f"      {ms:7.3f} ms  {name:26} {names.get(name, '')}")


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="small", help="comma-separated: small, base")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="torch.set_num_threads (JAX uses every core)")
  parser.add_argument("--skip-train", action="store_true")
  parser.add_argument("--profile", action="store_true", help="top XLA ops of our decode step")
  args = parser.parse_args()
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)
  print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {os.cpu_count()} CPU cores")
  rows = []
  for size in args.sizes.split(","):
    if size not in SIZES:
      raise SystemExit(f"--sizes: unknown size {size!r}; expected some of {sorted(SIZES)}")
    model, module, params = hf_model(size)
    print(f"[{size}] max |logits(ours) - logits(hf)| = {check_parity(model, module, params):.2e}")
    for batch in (1, 32):
      r = bench_decode(model, module, params, batch, args.repeats)
      rows.append((size, "decode", batch, r, f"same greedy tokens {r['same_tokens']:.0%}"))
      print_row(*rows[-1])
      if args.profile:
        profile_decode(params, r["decoder"], r["enc"])
    if not args.skip_train:
      r = bench_train(model, module, params, 8, args.repeats)
      rows.append((size, "train", 8, r, f"loss {r['losses'][1]:.5f} (hf {r['losses'][0]:.5f}), "
                   f"{r['gflop']:.0f} GFLOP = {1e3 * r['gflop'] / r['ms_ours']:.0f} GFLOP/s ours, "
                   f"{1e3 * r['gflop'] / r['ms_hf']:.0f} hf"))
      print_row(*rows[-1])
    del model, module, params
  print("\nsize   task    batch      ours        hf  unit   ratio  goal  ms ours/hf (per step)")
  for row in rows:
    print_row(*row, table=True)


def print_row(size, task, batch, r, note, table=False):
  ratio, goal = r["ours"] / r["hf"], GOALS[(task, batch)]
  line = (f"{size:6} {task:7} {batch:5} {r['ours']:9.2f} {r['hf']:9.2f} {r['unit']:>6} "
          f"{ratio:5.2f}x {goal:4.1f}x  {r['ms_ours']:7.1f}/{r['ms_hf']:<7.1f} "
          f"{'ok' if ratio >= goal else 'MISSED'}; {note}")
  print(line if table else "  " + line)


if __name__ == "__main__":
  main()
