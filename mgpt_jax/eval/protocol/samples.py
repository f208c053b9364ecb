"""The test set of the protocol, re-sampled every replication.

Entries are the split's clips and captioned sub-clips in the dataset's length range
(HumanML3D 40 <= T < 200, KIT 24 <= T < 200). Each replication draws, per entry, one of
its captions and a crop of whole tokens at a random offset (the reference loader's
rule, `data.crops.random_crop`); the references of M2T are all of the entry's captions.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from tqdm import tqdm

from mgpt_jax.data import crops, formats


@dataclasses.dataclass(frozen=True)
class Sample:
  name: str  # the entry's name
  motion: np.ndarray  # the ground-truth crop (T, D), dataset units
  caption: formats.Caption  # the caption drawn for this replication
  references: tuple[str, ...]  # every caption text of the entry


class EvalSet:
  """Entries of one split with their features in memory."""

  def __init__(self, data_dir: str, dataset: str = "humanml3d", split: str = "test",
               max_entries: int | None = None, progress: bool = True):
    self.data = formats.MotionDataset(data_dir, dataset)
    listing = self.data.entries(
        split, on_error="skip",
        progress=lambda ids: tqdm(ids, desc=f"read {split}", disable=not progress, leave=False))
    self.skipped, self.filtered = listing.skipped, listing.filtered
    entries = listing.entries
    if max_entries is not None and len(entries) > max_entries:
      # An even spread over the length-sorted list keeps short and long entries alike.
      keep = np.linspace(0, len(entries) - 1, max_entries).round().astype(int)
      entries = [entries[i] for i in keep]
    if not entries:
      raise formats.MotionDataError(data_dir, f"no {split} entry in the length range "
                                    f"({listing.summary()})")
    clips: dict[str, np.ndarray] = {}
    self.entries = []
    for entry in entries:
      if entry.motion_id not in clips:
        clips[entry.motion_id] = self.data.features(entry.motion_id)
      self.entries.append((entry, clips[entry.motion_id][entry.start:entry.end]))
    self.split = split

  def __len__(self) -> int:
    return len(self.entries)

  @property
  def fps(self) -> float:
    return self.data.skeleton.fps

  def summary(self) -> str:
    return (f"{len(self)} {self.split} entries; {self.filtered} filtered by length, "
            f"{len(self.skipped)} skipped for errors")

  def sample(self, rng: np.random.Generator) -> list[Sample]:
    samples = []
    for entry, motion in self.entries:
      caption = entry.captions[int(rng.integers(len(entry.captions)))]
      samples.append(Sample(entry.name, crops.random_crop(motion, rng), caption,
                            tuple(c.text for c in entry.captions)))
    return samples
