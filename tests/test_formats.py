"""Readers of the real layout, and every kind of bad input with its error."""
import os

import numpy as np
import pytest

from mgpt_jax import atomic_io
from mgpt_jax.data import crops, formats
from mgpt_jax.data.formats import MotionDataError
from mgpt_jax.data.stats import Normalizer, compute_stats, renormalize

LINE = "a man walks forward.#a/DET man/NOUN walk/VERB forward/ADV#0.0#0.0"


def test_real_caption_files_parse(shared_data):
  texts = os.path.join(shared_data, "humanml3d", "texts")
  captions = [c for name in sorted(os.listdir(texts))
              for c in formats.read_captions(os.path.join(texts, name))]
  assert len(captions) > 30
  assert any(not c.whole_clip for c in captions)  # the files hold segment tags
  first = formats.read_captions(os.path.join(texts, "000000.txt"))[0]
  assert first.text.startswith("a man kicks") and first.tokens[2] == "kick/VERB"
  assert first.words[:2] == ("a", "man") and first.pos[:2] == ("DET", "NOUN")


def test_caption_line_round_trip_and_nan():
  caption = formats.parse_caption_line("jumps#jump/VERB#nan#0.0")
  assert caption.whole_clip and caption.start == 0.0
  segment = formats.parse_caption_line("jumps#jump/VERB#0.5#2.0")
  assert formats.parse_caption_line(segment.to_line()) == segment


@pytest.mark.parametrize("line, message", [
    ("#a/DET#0.0#0.0", "empty caption"),
    ("a man#a/DET man/NOUN#0.0", "expected 4 '#'-separated fields"),
    ("a man#a/DET#0.0#0.0#1", "expected 4 '#'-separated fields"),
    ("a man#a/DET man#0.0#0.0", "token 'man' is not of the form word/POS"),
    ("a man#a/DET#zero#0.0", "start time 'zero' is not a number"),
    ("a man#a/DET#2.0#1.0", "end 1.0 s is not after start 2.0 s"),
])
def test_bad_caption_lines_name_file_and_line(tmp_path, line, message):
  path = tmp_path / "000001.txt"
  path.write_text(LINE + "\n" + line + "\n")
  with pytest.raises(MotionDataError, match=message) as error:
    formats.read_captions(path)
  assert str(error.value).startswith(f"{path}:2: ")


def test_non_utf8_caption_file(tmp_path):
  path = tmp_path / "000002.txt"
  path.write_bytes(LINE.encode() + b"\ncaf\xe9#caf\xe9/NOUN#0.0#0.0\n")
  with pytest.raises(MotionDataError, match=r"000002.txt:2: not UTF-8"):
    formats.read_captions(path)


def test_truncated_and_corrupt_npy(tmp_path):
  good = tmp_path / "good.npy"
  np.save(good, np.zeros((50, 263), np.float32))
  truncated = tmp_path / "truncated.npy"
  truncated.write_bytes(good.read_bytes()[:500])
  corrupt = tmp_path / "corrupt.npy"
  corrupt.write_bytes(b"this is not numpy")
  for path in (truncated, corrupt):
    with pytest.raises(MotionDataError, match="not a readable .npy file") as error:
      formats.load_features(path, 263)
    assert str(path) in str(error.value)


def test_pickled_npy_is_refused(tmp_path):
  path = tmp_path / "pickled.npy"
  np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(MotionDataError, match="pickled.npy"):
    formats.load_features(path, 263)


def test_wrong_feature_dim_names_the_dataset(tmp_path):
  path = tmp_path / "kit.npy"
  np.save(path, np.zeros((50, 251), np.float32))
  with pytest.raises(MotionDataError, match=r"251-d features \(a KIT-ML file\?\); expected 263-d"):
    formats.load_features(path, 263)


def test_nan_frames_are_located(tmp_path):
  motion = np.zeros((50, 263), np.float32)
  motion[17, 3] = np.nan
  path = tmp_path / "nan.npy"
  np.save(path, motion)
  with pytest.raises(MotionDataError, match="first at frame 17"):
    formats.load_features(path, 263)


def _write_clip(root, motion_id, frames, lines, dim=263):
  os.makedirs(root / "new_joint_vecs", exist_ok=True)
  os.makedirs(root / "texts", exist_ok=True)
  np.save(root / "new_joint_vecs" / f"{motion_id}.npy",
          np.random.default_rng(len(motion_id) + frames).normal(size=(frames, dim)).astype(np.float32))
  (root / "texts" / f"{motion_id}.txt").write_text("\n".join(lines) + "\n")


def test_entries_sub_clips_length_filter_and_skips(tmp_path):
  _write_clip(tmp_path, "a", 120, [LINE, "jumps.#jump/VERB#1.0#4.0", "hop.#hop/VERB#1.0#4.0",
                                   "waves.#wave/VERB#0.0#1.0"])
  _write_clip(tmp_path, "b", 30, [LINE])  # shorter than 40 frames: filtered
  _write_clip(tmp_path, "c", 80, ["#a/DET#0.0#0.0"])  # bad caption line
  (tmp_path / "train.txt").write_text("a\nb\nc\nmissing\n")
  data = formats.MotionDataset(tmp_path, "humanml3d")
  with pytest.raises(MotionDataError, match="c.txt:1: empty caption"):
    data.entries("train")
  result = data.entries("train", on_error="skip")
  names = [e.name for e in result.entries]
  assert names == ["a@20-80", "a"]  # sorted by length; the 1 s segment (20 frames) filtered
  assert [c.text for c in result.entries[0].captions] == ["jumps.", "hop."]
  assert data.motion(result.entries[0]).shape == (60, 263)
  assert result.filtered == 2
  assert sorted(s.reason for s in result.skipped) == ["empty caption", "file not found"]
  assert "2 skipped for errors" in result.summary()


def test_split_file_missing(tmp_path):
  with pytest.raises(MotionDataError, match=r"val.txt: split file for 'val' not found"):
    formats.read_split(tmp_path, "validation")


def test_stats_and_renormalisation(shared_data, tmp_path):
  dataset = Normalizer.from_dir(os.path.join(shared_data, "humanml3d"), "dataset", 263)
  meta = Normalizer.from_dir(os.path.join(shared_data, "meta"), "meta", 263)
  x = np.random.default_rng(0).normal(size=(5, 263)).astype(np.float32)
  np.testing.assert_allclose(renormalize(renormalize(x, dataset, meta), meta, dataset), x,
                             rtol=1e-3, atol=1e-3)
  with pytest.raises(MotionDataError, match=r"expected stats of shape \(251,\)"):
    Normalizer.from_dir(os.path.join(shared_data, "humanml3d"), "dataset", 251)


def test_compute_stats_is_groupwise_with_feat_bias():
  motions = [np.random.default_rng(i).normal(size=(60, 263)) * (i + 1) for i in range(3)]
  plain, meta = compute_stats(motions, 22), compute_stats(motions, 22, feat_bias=25.0)
  assert len(set(plain.std[4:67].tolist())) == 1
  np.testing.assert_allclose(plain.std[259:] / meta.std[259:], 25.0, rtol=1e-5)
  np.testing.assert_allclose(plain.std[4:259], meta.std[4:259])


def test_crops():
  rng = np.random.default_rng(0)
  lengths = {crops.crop_length(103, rng) for _ in range(100)}
  assert lengths == {100, 96}
  motion = np.arange(70)[:, None]
  window = crops.random_window(motion, rng, 64)
  assert len(window) == 64 and np.all(np.diff(window[:, 0]) == 1)
  with pytest.raises(ValueError, match="shorter than the window"):
    crops.random_window(motion[:10], rng, 64)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "out.npy"
  with pytest.raises(RuntimeError):
    with atomic_io.atomic_path(target) as tmp:
      open(tmp, "w").write("half")
      raise RuntimeError("interrupted")
  assert os.listdir(tmp_path) == []
  atomic_io.save_npy(target, np.ones(3))
  assert os.listdir(tmp_path) == ["out.npy"]
