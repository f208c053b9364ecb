"""One replication of each task's protocol (reference §7.2), with the quirks of §11 fixed.

Every task returns {"model": {metric: value}, "real": {metric: value}}: "real" is the
ground truth scored the same way (its FID compares two independent crop samples of the
test set, which is how the reference's Real row gets its 0.002).

Fixes of the released code, each on purpose:
- Prediction is scored as prefix (ground truth) + continuation, and ADE/FDE only over the
  frames the model produced (§11.3); the in-between answer only over its in-filled frames.
- ADE/FDE stop at each sequence's own length, never in batch padding (§11.4).
- M2T references are the raw ground-truth captions, not lemmatised tokens (§11.6).
- The evaluator's motion GRU stops at each sequence's length unless the evaluator was
  imported with pack_motion=False (§11.5).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Protocol, Sequence

import jax
import numpy as np

from mgpt_jax.data.features import features_to_joints
from mgpt_jax.eval.metrics import distribution, retrieval, trajectory
from mgpt_jax.eval.metrics import joints as joint_metrics
from mgpt_jax.eval.metrics import text as text_metrics
from mgpt_jax.eval.protocol.samples import Sample
from mgpt_jax.lm import motion_span

TASKS = ("t2m", "m2t", "pred", "inbetween", "recon")


class System(Protocol):
  """What the protocol needs of a trained system (`inference.motiongpt.MotionGPT` is one)."""

  frames_per_token: int

  def text_to_motion(self, texts: Sequence[str], seed: int = 0): ...
  def motion_to_text(self, motions: Sequence[np.ndarray]) -> list[str]: ...
  def predict(self, motions: Sequence[np.ndarray], seed: int = 0): ...
  def inbetween(self, motions: Sequence[np.ndarray], seed: int = 0): ...
  def features_to_codes(self, features: np.ndarray) -> np.ndarray: ...
  def codes_to_features(self, codes: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Settings:
  """The reference's METRIC settings (§10); the sizes shrink to N on small test sets."""
  group_size: int = 32  # R_size
  top_k: int = 3
  diversity_times: int = 300
  mm_texts: int = 100  # MM_NUM_SAMPLES; 0 skips MultiModality
  mm_repeats: int = 30  # MM_NUM_REPEATS
  mm_times: int = 10  # MM_NUM_TIMES
  batch_size: int = 32
  bert_score_model: str | None = None  # a local model for BERTScore, else it is skipped


@dataclasses.dataclass
class Context:
  system: System
  evaluator: object  # eval.evaluator.store.Evaluator
  settings: Settings
  rng: np.random.Generator
  progress: Callable[[int], None] = lambda n: None
  tagger: Callable[[str], list[str]] | None = None  # generated caption -> word/POS tokens
  to_mm: float = 1000.0  # joint units -> mm (HumanML3D metres; KIT-ML is already in mm)
  notes: set = dataclasses.field(default_factory=set)

  def seed(self) -> int:
    return int(self.rng.integers(2**31))

  def batched(self, fn, items: Sequence, **kwargs) -> list:
    out = []
    for i in range(0, len(items), self.settings.batch_size):
      chunk = list(items[i:i + self.settings.batch_size])
      out.extend(fn(chunk, **kwargs))
      self.progress(len(chunk))
    return out


# ----------------------------------------------------------------------------- shared metrics


def _retrieval(ctx: Context, text_emb, motion_emb, prefix: str = "") -> dict[str, float]:
  group = min(ctx.settings.group_size, len(text_emb))
  if group < ctx.settings.group_size:
    ctx.notes.add(f"R-precision and MM-Dist over groups of {group} (fewer than "
                  f"{ctx.settings.group_size} test entries)")
  order = ctx.rng.permutation(len(text_emb))  # R-precision and MM-Dist share the groups
  text_emb, motion_emb = np.asarray(text_emb)[order], np.asarray(motion_emb)[order]
  top = retrieval.r_precision(text_emb, motion_emb, min(ctx.settings.top_k, group), group)
  out = {f"{prefix}r_top{k + 1}": float(v) for k, v in enumerate(top)}
  out[f"{prefix}mm_dist"] = retrieval.matching_score(text_emb, motion_emb, group_size=group)
  return out


def _diversity(ctx: Context, emb) -> float:
  times = min(ctx.settings.diversity_times, len(emb))
  if times < ctx.settings.diversity_times:
    ctx.notes.add(f"Diversity over {times} pairs (fewer than {ctx.settings.diversity_times} "
                  "test entries)")
  return distribution.diversity(emb, times, ctx.rng)


def _cut(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """A generated motion cut to the ground truth's length, as the reference evaluates it."""
  return generated[:len(reference)]


def _distribution(ctx: Context, samples, twins, generated):
  """FID and Diversity of generated motions and of the ground truth (+ both embeddings)."""
  gt = ctx.evaluator.embed_motions([s.motion for s in samples])
  twin = ctx.evaluator.embed_motions([s.motion for s in twins])
  gen = ctx.evaluator.embed_motions([_cut(g, s.motion) for g, s in zip(generated, samples)])
  model = {"fid": distribution.fid(gt, gen), "diversity": _diversity(ctx, gen)}
  real = {"fid": distribution.fid(gt, twin), "diversity": _diversity(ctx, gt)}
  return model, real, gt, gen


# ----------------------------------------------------------------------------- tasks


def t2m(ctx: Context, samples: list[Sample], twins: list[Sample]) -> dict:
  """Text-to-motion: the model picks the length; the answer is cut to the crop's length."""
  texts = [s.caption.text for s in samples]
  generated = [f for f, _ in ctx.batched(ctx.system.text_to_motion, texts, seed=ctx.seed())]
  model, real, gt_emb, gen_emb = _distribution(ctx, samples, twins, generated)
  text_emb = ctx.evaluator.embed_texts([s.caption.tokens for s in samples])
  model.update(_retrieval(ctx, text_emb, gen_emb))
  real.update(_retrieval(ctx, text_emb, gt_emb))
  if ctx.settings.mm_texts:
    model["multimodality"] = _multimodality(ctx, samples)
  return {"model": model, "real": real}


def _multimodality(ctx: Context, samples: list[Sample]) -> float:
  texts = min(ctx.settings.mm_texts, len(samples))
  repeats = ctx.settings.mm_repeats
  times = min(ctx.settings.mm_times, repeats)
  if texts < ctx.settings.mm_texts:
    ctx.notes.add(f"MultiModality over {texts} texts (fewer test entries than "
                  f"{ctx.settings.mm_texts})")
  chosen = [samples[i] for i in ctx.rng.choice(len(samples), texts, replace=False)]
  prompts = [s.caption.text for s in chosen for _ in range(repeats)]
  generated = [f for f, _ in ctx.batched(ctx.system.text_to_motion, prompts, seed=ctx.seed())]
  cut = [_cut(g, s.motion) for g, s in zip(generated, (s for s in chosen for _ in range(repeats)))]
  emb = ctx.evaluator.embed_motions(cut).reshape(texts, repeats, -1)
  return distribution.multimodality(emb, times, ctx.rng)


def m2t(ctx: Context, samples: list[Sample], twins: list[Sample]) -> dict:
  """Motion-to-text: greedy captions of the ground-truth crops."""
  del twins
  captions = ctx.batched(ctx.system.motion_to_text, [s.motion for s in samples])
  motion_emb = ctx.evaluator.embed_motions([s.motion for s in samples])
  gen_text_emb = ctx.evaluator.embed_texts([ctx.tagger(c) for c in captions])
  gt_text_emb = ctx.evaluator.embed_texts([s.caption.tokens for s in samples])
  model = _retrieval(ctx, gen_text_emb, motion_emb)
  real = _retrieval(ctx, gt_text_emb, motion_emb)
  model["length_avg"] = float(np.mean([len(c.split()) for c in captions]))
  real["length_avg"] = float(np.mean([len(s.caption.text.split()) for s in samples]))
  references = [list(s.references) for s in samples]
  model.update(text_metrics.caption_metrics(captions, references))
  f1, note = text_metrics.bert_score_f1(captions, references, ctx.settings.bert_score_model)
  if f1 is None:
    ctx.notes.add(f"BERTScore skipped: {note}")
  else:
    model["bert_score"] = f1
    if note:
      ctx.notes.add(f"BERTScore: {note}")
  return {"model": model, "real": real, "examples": list(zip(captions[:5], references[:5]))}


def _completion(ctx: Context, samples, twins, method: str, scored) -> dict:
  motions = [s.motion for s in samples]
  outputs = ctx.batched(getattr(ctx.system, method), motions, seed=ctx.seed())
  generated = [f for f, _ in outputs]
  model, real, _, _ = _distribution(ctx, samples, twins, generated)
  model.update(_trajectory(ctx, samples, generated, scored))
  return {"model": model, "real": real}


def _trajectory(ctx: Context, samples, generated, scored) -> dict[str, float]:
  """ADE/FDE (metres) over the frames each answer had to produce, on recovered joints."""
  unit = ctx.system.frames_per_token
  pairs, dropped = [], 0
  for s, g in zip(samples, generated):
    start, end = scored(len(s.motion) // unit)
    end = min(end * unit, len(g), len(s.motion))
    if end <= start * unit:
      dropped += 1  # the answer is shorter than the part it had to produce
      continue
    pairs.append((features_to_joints(g[:end]), features_to_joints(s.motion[:end]), start * unit))
  scored_fraction = len(pairs) / max(len(samples), 1)
  if dropped:
    ctx.notes.add("ADE/FDE only over answers long enough to reach the frames they had to "
                  "produce; 'scored' in the JSON is that fraction")
  if not pairs:
    return {"ade": float("nan"), "fde": float("nan"), "scored": 0.0}
  t = max(len(p) for p, _, _ in pairs)
  pad = lambda x: np.pad(x, [(0, t - len(x))] + [(0, 0)] * (x.ndim - 1))
  pred = np.stack([pad(p) for p, _, _ in pairs])
  gt = np.stack([pad(g) for _, g, _ in pairs])
  lengths = np.array([len(p) for p, _, _ in pairs])
  ade, fde = trajectory.ade_fde(pred, gt, lengths, np.array([s for _, _, s in pairs]))
  return {"ade": ade, "fde": fde, "scored": scored_fraction}


def pred(ctx: Context, samples, twins) -> dict:
  """Prediction from the first 20 % of the codes: scored on the continuation only."""
  def scored(num_codes: int):
    return motion_span.split_point(num_codes, motion_span.PREDICTION_RATIO), num_codes
  return _completion(ctx, samples, twins, "predict", scored)


def inbetween(ctx: Context, samples, twins) -> dict:
  """In-between with the first and last quarter kept: scored on the in-filled codes."""
  def scored(num_codes: int):  # the codes masked_string replaces by mask tokens
    return motion_span.gap(num_codes)
  return _completion(ctx, samples, twins, "inbetween", scored)


def recon(ctx: Context, samples, twins) -> dict:
  """Tokenizer round trip of each crop at its own length (Table 8); equal lengths batch."""
  by_length: dict[int, list[int]] = {}
  for i, s in enumerate(samples):
    by_length.setdefault(len(s.motion), []).append(i)
  generated = [None] * len(samples)
  for rows in by_length.values():
    for k in range(0, len(rows), ctx.settings.batch_size):
      chunk = rows[k:k + ctx.settings.batch_size]
      codes = ctx.system.features_to_codes(np.stack([samples[i].motion for i in chunk]))
      for i, features in zip(chunk, ctx.system.codes_to_features(codes)):
        generated[i] = features
      ctx.progress(len(chunk))
  model, real, _, _ = _distribution(ctx, samples, twins, generated)
  errors = _joint_errors([features_to_joints(g) for g in generated],
                         [features_to_joints(s.motion[:len(g)]) for s, g in zip(samples, generated)])
  model.update({k: float(np.mean(v)) * ctx.to_mm for k, v in errors.items()})
  return {"model": model, "real": real}


def _joint_errors(predicted: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> dict:
  """Per-clip MPJPE, PA-MPJPE and acceleration error of (T_i, J, 3) pairs, in one compiled
  call: clips are edge-padded to a multiple of 64 frames and masked (one eager call per
  clip compiled each jnp op once per length: 40 of recon's 70 seconds)."""
  length = -(-max(len(p) for p in predicted) // 64) * 64
  def pad(clips):
    return np.stack([np.pad(c, ((0, length - len(c)), (0, 0), (0, 0)), mode="edge")
                     for c in clips]).astype(np.float32)
  mask = np.arange(length)[None, :] < np.array([len(p) for p in predicted])[:, None]
  values = _clip_errors(pad(predicted), pad(target), mask)
  return {name: np.asarray(v) for name, v in zip(("mpjpe_mm", "pa_mpjpe_mm", "accl_mm"), values)}


@jax.jit
def _clip_errors(predicted, target, mask):
  def one(p, t, m):
    return (joint_metrics.mpjpe(p, t, m), joint_metrics.pa_mpjpe(p, t, m),
            joint_metrics.acceleration_error(p, t, m))
  return jax.vmap(one)(predicted, target, mask)


RUNNERS = {"t2m": t2m, "m2t": m2t, "pred": pred, "inbetween": inbetween, "recon": recon}
