"""The seqio data source of stages 2-3: the motion tokens of stage 1 with their captions.

One example per entry (a clip, or a captioned sub-clip `<id>@<start>-<end>`), as the reference
loader has it:
    id          the entry name
    codes       int32 [L], the stage-1 codes of TOKENS/<id>.npy (row 0 of its (1, L) array)
    captions    string [N], the entry's caption lines
    num_frames  int32, the frames the codes stand for (L x frames per token)
    fps         float32, the dataset's frame rate

Where the data lives is set in gin and read when a dataset is built:
    sources.locations.humanml3d = '/data/HumanML3D'     # texts/, splits, new_joint_vecs/, TOKENS/
"""
from __future__ import annotations

import functools
import os

import gin
import numpy as np
import seqio
import tensorflow as tf
from absl import logging

from mgpt_jax.data import formats
from mgpt_jax.data.skeletons import get_skeleton

TOKENS_DIR = formats.TOKENS_DIR
FRAMES_PER_TOKEN = 4  # the tokenizer's temporal downsampling (reference: down_t 2 = x4)
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # seqio name -> split file
_REPORTED_SKIPS = 10


@gin.configurable
def locations(humanml3d: str | None = None, kit_ml: str | None = None,
              synthetic: str | None = None, tokens_dir: str = TOKENS_DIR) -> dict:
  """Dataset roots by dataset name; tokens are read from <root>/<tokens_dir>."""
  return {"humanml3d": humanml3d, "kit_ml": kit_ml, "synthetic": synthetic,
          "tokens_dir": tokens_dir}


def dataset_root(name: str) -> tuple[str, str]:
  """(data root, tokens dir) of a dataset, with an error that says how to set them."""
  where = locations()
  root = where.get(name)
  # An unset DATA_DIR macro arrives as gin's REQUIRED sentinel, not as None.
  if not root or not isinstance(root, (str, os.PathLike)):
    raise ValueError(f"no data directory for dataset {name!r}: set DATA_DIR (the gin/tasks files "
                     f"bind `sources.locations.{name} = %DATA_DIR`) to the dataset root, which "
                     "holds texts/, the split files and the TOKENS/ of stage 1")
  root = os.fspath(root)
  tokens = os.path.join(root, where["tokens_dir"])
  if not os.path.isdir(tokens):
    raise formats.MotionDataError(tokens, "no motion tokens: run stage 1 and `mgpt "
                                  "tokenize-dataset` (it writes TOKENS/<entry>.npy) first")
  return root, tokens


def _read_codes(path: str) -> np.ndarray:
  codes = formats.load_npy(path)
  if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
    raise formats.MotionDataError(path, f"expected tokens of shape (1, L), got {codes.shape}")
  if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
    raise formats.MotionDataError(path, "expected non-negative integer codes")
  return codes[0].astype(np.int32)


@functools.lru_cache(maxsize=16)
def read_examples(root: str, tokens_dir: str, skeleton: str, split: str) -> dict:
  """Every usable entry of a split as column arrays; what is skipped is logged with its reason."""
  dataset = formats.MotionDataset(root, skeleton)
  entries = dataset.entries(split, on_error="skip", check_features=False)
  skipped = [str(s) for s in entries.skipped]
  ids, codes, captions = [], [], []
  for entry in entries.entries:
    try:
      entry_codes = _read_codes(os.path.join(tokens_dir, entry.name + ".npy"))
    except formats.MotionDataError as e:
      skipped.append(str(e))
      continue
    ids.append(entry.name)
    codes.append(entry_codes)
    captions.append([c.text for c in entry.captions])
  message = (f"{root} split {split!r}: {len(ids)} examples; {len(skipped)} skipped, "
             f"{entries.filtered} filtered by length")
  if skipped:
    logging.warning("%s:\n  %s%s", message, "\n  ".join(skipped[:_REPORTED_SKIPS]),
                    f"\n  ... and {len(skipped) - _REPORTED_SKIPS} more"
                    if len(skipped) > _REPORTED_SKIPS else "")
  else:
    logging.info(message)
  if not ids:
    raise formats.MotionDataError(root, f"split {split!r} has no entries with tokens "
                                  f"({len(skipped)} skipped" + (f"; first: {skipped[0]}" if skipped
                                                                else "") + ")")
  return {"id": np.asarray(ids), "codes": codes, "captions": captions}


class MotionTokenSource(seqio.DataSource):
  """Entries of one dataset with their stage-1 codes; shards by entry, shuffles by seed."""

  def __init__(self, name: str, skeleton: str):
    super().__init__(splits=tuple(SPLITS))
    self.name = name
    self.skeleton = get_skeleton(skeleton)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str):
    return [split]

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, **unused) -> tf.data.Dataset:
    if split not in SPLITS:
      raise ValueError(f"split {split!r}: expected one of {sorted(SPLITS)}")
    root, tokens_dir = dataset_root(self.name)
    columns = read_examples(root, tokens_dir, self.skeleton.name, SPLITS[split])
    rows = np.arange(len(columns["id"]))
    if shard_info is not None:
      rows = rows[shard_info.index::shard_info.num_shards]
    codes = [columns["codes"][i] for i in rows]
    captions = [columns["captions"][i] for i in rows]
    lengths = np.asarray([len(c) for c in codes], np.int32)
    ds = tf.data.Dataset.from_tensor_slices({
        "id": columns["id"][rows],
        "codes": tf.RaggedTensor.from_row_lengths(np.concatenate(codes), lengths),
        # from_row_lengths: tf.ragged.constant walks Python lists and takes seconds at 30K entries.
        "captions": tf.RaggedTensor.from_row_lengths(
            tf.constant([c for entry in captions for c in entry], tf.string),
            np.asarray([len(entry) for entry in captions], np.int64)),
        "num_frames": lengths * FRAMES_PER_TOKEN,
        "fps": np.full(len(rows), self.skeleton.fps, np.float32),
    })
    if shuffle:
      ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    return ds

  def num_input_examples(self, split: str) -> int | None:
    return None
