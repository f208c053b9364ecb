"""Motion <-> tokens with a trained stage-1 tokenizer, and `mgpt tokenize-dataset`.

tokenize_dataset writes TOKENS/<entry name>.npy, int32 of shape (1, L), for
every whole clip and captioned sub-clip of the chosen splits. Each motion is cut
to whole tokens (its first floor(T/4)*4 frames), so the result is deterministic.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import sys

import jax
import numpy as np
from tqdm import tqdm

from mgpt_jax import atomic_io
from mgpt_jax.data import formats
from mgpt_jax.data.stats import Normalizer
from mgpt_jax.inference.checkpoint import read_variables, write_variables
from mgpt_jax.tokenizer.vqvae import MotionVQVAE, VQConfig

TOKENS_DIR = formats.TOKENS_DIR
ASSETS, CONFIG_FILE, DATA_FILE = "assets", "vq_config.json", "data.txt"


class Tokenizer:
  """A trained stage-1 tokenizer: network, variables and the stats it was trained with."""

  def __init__(self, config: VQConfig, variables: dict, normalizer: Normalizer, dataset: str,
               step: int = 0):
    self.module = MotionVQVAE(config)
    self.variables, self.normalizer, self.dataset, self.step = variables, normalizer, dataset, step
    self._encode = jax.jit(functools.partial(self.module.apply, method=MotionVQVAE.encode))
    self._decode = jax.jit(functools.partial(self.module.apply, method=MotionVQVAE.decode))

  @classmethod
  def load(cls, model_dir: str, step: int | None = None) -> "Tokenizer":
    """The tokenizer of a stage-1 run directory (its assets/ and latest checkpoint)."""
    assets = os.path.join(model_dir, ASSETS)
    try:
      with open(os.path.join(assets, CONFIG_FILE), encoding="utf-8") as f:
        config = VQConfig(**json.load(f))
      with open(os.path.join(assets, DATA_FILE), encoding="utf-8") as f:
        info = dict(line.split("=", 1) for line in f.read().split())
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{e.filename}: missing; is {model_dir} a stage-1 run "
                              "directory?") from None
    variables, step = read_variables(model_dir, step)
    return cls(config, variables, Normalizer.from_dir(assets, "dataset", config.nfeats),
               info["dataset"], step)

  def save(self, model_dir: str, stats_kind: str = "dataset") -> str:
    """Writes the layout `load` reads: a stage-1 run directory without optimizer state.

    The stats go in as Mean/Std.npy whatever their kind, as a training run keeps them.
    """
    assets = os.path.join(model_dir, ASSETS)
    os.makedirs(assets, exist_ok=True)
    atomic_io.write_text(os.path.join(assets, CONFIG_FILE),
                         json.dumps(self.module.config.to_dict(), indent=2))
    self.normalizer.save(assets, "dataset")
    atomic_io.write_text(os.path.join(assets, DATA_FILE),
                         f"dataset={self.dataset}\nstats_kind={stats_kind}\n")
    write_variables(model_dir, self.variables, self.step)
    return model_dir

  @property
  def frames_per_token(self) -> int:
    return self.module.config.frames_per_token

  def encode(self, features: np.ndarray) -> np.ndarray:
    """Features (B, T, D) in dataset units, T a multiple of 4 -> codes (B, T/4) int32."""
    codes = self._encode(self.variables, self.normalizer.normalize(features).astype(np.float32))
    return np.asarray(codes, np.int32)

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """Codes (B, L) -> features (B, 4L, D) in dataset units."""
    return self.normalizer.denormalize(np.asarray(self._decode(self.variables, np.asarray(codes))))


@dataclasses.dataclass
class TokenizeReport:
  out_dir: str
  written: int
  skipped: list[formats.Skipped]

  def summary(self) -> str:
    return f"wrote {self.written} token files to {self.out_dir}; skipped {len(self.skipped)}"


def tokenize_dataset(model_dir: str, data_dir: str, out_dir: str | None = None,
                     splits=("train", "val", "test"), batch_size: int = 64,
                     progress: bool = True) -> TokenizeReport:
  tokenizer = Tokenizer.load(model_dir)
  data = formats.MotionDataset(data_dir, tokenizer.dataset)
  out_dir = out_dir or os.path.join(data_dir, TOKENS_DIR)
  unit = tokenizer.frames_per_token
  skipped: list[formats.Skipped] = []
  by_length: dict[int, list[formats.Entry]] = collections.defaultdict(list)
  for split in splits:
    entries = data.entries(split, on_error="skip")
    skipped += entries.skipped
    for entry in entries.entries:
      by_length[entry.length // unit * unit].append(entry)

  total = sum(len(v) for v in by_length.values())
  written = 0
  with tqdm(total=total, desc="tokenize", unit="motion", file=sys.stderr,
            disable=not progress) as bar:
    for length, entries in sorted(by_length.items()):
      for i in range(0, len(entries), batch_size):
        batch = entries[i:i + batch_size]
        motions = np.stack([data.motion(e)[:length] for e in batch])
        for entry, codes in zip(batch, tokenizer.encode(motions)):
          atomic_io.save_npy(os.path.join(out_dir, entry.name + ".npy"), codes[None])
          written += 1
        bar.update(len(batch))
  return TokenizeReport(out_dir, written, skipped)
