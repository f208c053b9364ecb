"""Builds a tiny hand-written dataset in the HumanML3D layout with the tfds builder."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from mgpt_jax.data import formats
from mgpt_jax.data import tfds_builder

DIM = 263
SPLIT_IDS = {"train": [f"{i:06d}" for i in range(8)],
             "val": ["000008", "000009"],
             "test": ["000010", "000011"]}
CORRUPT_ID = "000007"  # in train
SUB_ID = "000003"  # has a caption line for the sub-clip 0.5 s .. 3.0 s (frames 10..60)
TFDS_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def _write_root(root):
  rng = np.random.default_rng(0)
  os.makedirs(root / formats.FEATURES_DIR)
  os.makedirs(root / formats.TEXTS_DIR)
  for split, ids in SPLIT_IDS.items():
    (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    for i, motion_id in enumerate(ids):
      length = int(rng.integers(60 if motion_id == SUB_ID else 40, 121))
      features = rng.standard_normal((length, DIM)).astype(np.float32)
      np.save(root / formats.FEATURES_DIR / f"{motion_id}.npy", features)
      lines = [f"a person walks forward {motion_id}#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0",
               f"someone moves {i}#someone/PRON move/VERB#0.0#0.0"]
      if i % 2:
        lines.append("they turn around#they/PRON turn/VERB around/ADV#nan#nan")
      if motion_id == SUB_ID:
        lines.append("then jumps#then/ADV jump/VERB#0.5#3.0")
      (root / formats.TEXTS_DIR / f"{motion_id}.txt").write_text("\n".join(lines) + "\n")
  # Truncated after the header: np.load fails on it.
  path = root / formats.FEATURES_DIR / f"{CORRUPT_ID}.npy"
  path.write_bytes(path.read_bytes()[:100])
  np.save(root / "Mean.npy", np.zeros(DIM, np.float32))
  np.save(root / "Std.npy", np.ones(DIM, np.float32))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("HumanML3D")
  _write_root(root)
  builder = tfds_builder.build(root, "synthetic", tfds_data_dir=tmp_path_factory.mktemp("tfds"))
  examples = {split: {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}
              for split in TFDS_SPLITS}
  return root, builder, examples


def test_split_sizes_match_motion_dataset(built):
  root, builder, examples = built
  dataset = formats.MotionDataset(root, "humanml3d")
  for split, stem in TFDS_SPLITS.items():
    entries = dataset.entries(stem, on_error="skip")
    assert builder.info.splits[split].num_examples == len(entries.entries)
    assert sorted(examples[split]) == sorted(e.name for e in entries.entries)
  train = dataset.entries("train", on_error="skip")
  assert [os.path.basename(s.path) for s in train.skipped] == [f"{CORRUPT_ID}.npy"]
  assert CORRUPT_ID not in examples["train"]


def test_features(built):
  _, builder, examples = built
  assert builder.info.features["motion"].shape == (None, DIM)
  for split in examples.values():
    for name, ex in split.items():
      assert ex["motion"].dtype == np.float32 and ex["motion"].shape == (ex["length"], DIM)
      assert ex["length"].dtype == np.int32
      assert ex["start"].dtype == np.float32 and ex["end"].dtype == np.float32
      n = len(ex["captions"])
      assert n >= 1 and len(ex["tokens"]) == len(ex["start"]) == len(ex["end"]) == n
      assert name.startswith(ex["motion_id"].decode())


def test_sub_clip(built):
  root, _, examples = built
  train = examples["train"]
  sub = train[f"{SUB_ID}@10-60"]
  assert sub["motion_id"].decode() == SUB_ID and sub["length"] == 50
  assert [c.decode() for c in sub["captions"]] == ["then jumps"]
  assert [t.decode() for t in sub["tokens"]] == ["then/ADV jump/VERB"]
  np.testing.assert_array_equal(sub["start"], [0.5])
  np.testing.assert_array_equal(sub["end"], [3.0])
  full = np.load(root / formats.FEATURES_DIR / f"{SUB_ID}.npy")
  np.testing.assert_array_equal(sub["motion"], full[10:60])
  whole = train[SUB_ID]
  assert len(whole["captions"]) == 3  # the sub-clip line is not a caption of the whole clip
  assert whole["captions"][2].decode() == "they turn around"
  assert whole["tokens"][2].decode() == "they/PRON turn/VERB around/ADV"
  np.testing.assert_array_equal(whole["end"], [0, 0, 0])  # nan#nan reads as the whole clip


def test_motion_values_equal_npy(built):
  root, _, examples = built
  ex = examples["test"]["000010"]
  full = np.load(root / formats.FEATURES_DIR / "000010.npy")
  assert ex["length"] == len(full)
  np.testing.assert_array_equal(ex["motion"], full)
  assert [c.decode() for c in ex["captions"]] == ["a person walks forward 000010", "someone moves 0"]
  assert ex["tokens"][1].decode() == "someone/PRON move/VERB"


def test_empty_split_names_directory(tmp_path, caplog):
  root = tmp_path / "bad"
  _write_root(root)
  (root / "val.txt").write_text(CORRUPT_ID + "\n")
  with pytest.raises(formats.MotionDataError, match=r"'val'.*no valid entries") as info:
    tfds_builder.build(root, "humanml3d", tfds_data_dir=tmp_path / "tfds")
  assert str(root) in str(info.value) and f"{CORRUPT_ID}.npy" in str(info.value)
  # The skipped clip of the (still valid) train split is reported with its reason.
  train_log = [r.getMessage() for r in caplog.records if "split 'train'" in r.getMessage()]
  assert len(train_log) == 1 and "1 skipped" in train_log[0] and "corrupt" in train_log[0]


def test_reimport_is_harmless():
  import importlib
  module = importlib.reload(tfds_builder)
  assert module.MotionText.name == "motion_text"
  assert tfds.builder_cls("motion_text").__name__ == "MotionText"
  assert {c.name for c in module.MotionText.BUILDER_CONFIGS} == {"humanml3d", "kit_ml", "synthetic"}
