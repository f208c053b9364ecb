"""`mgpt data validate / to-features / to-joints / synth` on a synthetic directory."""
import collections
import os
import shutil

import numpy as np
import pytest

from mgpt_jax import cli
from mgpt_jax.data import features as F
from mgpt_jax.data import formats, validate


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synth") / "data")
  assert cli.main(["data", "synth", out, "--num-motions", "12", "--seed", "3",
                   "--workers", "1"]) == 0
  return out


@pytest.fixture
def broken_copy(synthetic_dir, tmp_path):
  root = tmp_path / "broken"
  shutil.copytree(synthetic_dir, root)
  return root


def test_synthetic_directory_is_valid(synthetic_dir, capsys):
  assert cli.main(["data", "validate", synthetic_dir]) == 0
  out = capsys.readouterr().out
  assert "12 clips" in out and "0 errors" in out


def test_validate_reports_every_problem_with_its_file(broken_copy, capsys):
  root = broken_copy
  ids = formats.read_split(root, "all")
  features_dir, texts_dir = root / "new_joint_vecs", root / "texts"
  np.save(features_dir / f"{ids[0]}.npy", np.zeros((60, 251), np.float32))  # wrong dim
  nan = np.load(features_dir / f"{ids[1]}.npy")
  nan[5] = np.nan
  np.save(features_dir / f"{ids[1]}.npy", nan)
  (features_dir / f"{ids[2]}.npy").write_bytes(b"\x93NUMPY garbage")  # corrupt
  np.save(features_dir / f"{ids[3]}.npy", np.zeros((20, 263), np.float32))  # too short
  (texts_dir / f"{ids[4]}.txt").write_text("a person walks#a/DET person/NOUN#0.0\n")
  (texts_dir / f"{ids[5]}.txt").write_bytes(b"caf\xe9#caf\xe9/NOUN#0.0#0.0\n")
  os.remove(features_dir / f"{ids[6]}.npy")  # split id without file
  np.save(features_dir / "999999.npy", np.zeros((60, 263), np.float32))  # extra file

  report = validate.validate_dataset(root, "humanml3d")
  by_file = collections.defaultdict(str)
  for p in report.problems:
    by_file[(os.path.basename(p.path), p.severity)] += p.message + "; "
  assert "263-d" in by_file[(f"{ids[0]}.npy", "error")]
  assert "first at frame 5" in by_file[(f"{ids[1]}.npy", "error")]
  assert "not a readable .npy" in by_file[(f"{ids[2]}.npy", "error")]
  assert "outside the loaders' range" in by_file[(f"{ids[3]}.npy", "warning")]
  assert "expected 4 '#'-separated fields" in by_file[(f"{ids[4]}.txt", "error")]
  assert "not UTF-8" in by_file[(f"{ids[5]}.txt", "error")]
  assert "split id without file" in by_file[(f"{ids[6]}.npy", "error")]
  assert "extra file" in by_file[("999999.npy", "warning")]
  assert not report.ok

  assert cli.main(["data", "validate", str(root), "--dataset", "humanml3d"]) == 1
  out = capsys.readouterr().out
  assert f"{ids[4]}.txt:1" in out and "errors" in out.splitlines()[0]


def test_validate_missing_split_and_directory(broken_copy, tmp_path):
  os.remove(broken_copy / "test.txt")
  report = validate.validate_dataset(broken_copy)
  assert any(p.path.endswith("test.txt") and "missing split file" in p.message
             for p in report.errors)
  with pytest.raises(formats.MotionDataError, match="dataset directory not found"):
    validate.validate_dataset(tmp_path / "nowhere")


def test_to_features_and_to_joints_round_trip(synthetic_dir, tmp_path, capsys):
  motion_id = formats.read_split(synthetic_dir, "all")[0]
  joints_path = os.path.join(synthetic_dir, "new_joints", motion_id + ".npy")
  joints = np.load(joints_path)
  out_features, out_joints = tmp_path / "f.npy", tmp_path / "j.npy"
  assert cli.main(["data", "to-features", joints_path, str(out_features)]) == 0
  assert cli.main(["data", "to-joints", str(out_features), str(out_joints)]) == 0
  features = np.load(out_features)
  assert features.shape == (len(joints) - 1, 263) and features.dtype == np.float32
  np.testing.assert_allclose(np.load(out_joints), joints[:-1], atol=1e-4)

  # Normalised input with --stats gives the same joints.
  from mgpt_jax.data.stats import Normalizer
  stats = Normalizer.from_dir(synthetic_dir, "dataset")
  np.save(tmp_path / "n.npy", stats.normalize(features))
  assert cli.main(["data", "to-joints", str(tmp_path / "n.npy"), str(tmp_path / "j2.npy"),
                   "--stats", synthetic_dir]) == 0
  np.testing.assert_allclose(np.load(tmp_path / "j2.npy"), np.load(out_joints), atol=1e-4)


def test_conversion_errors_are_clear(tmp_path, capsys):
  np.save(tmp_path / "j.npy", np.zeros((30, 21, 3)))
  assert cli.main(["data", "to-features", str(tmp_path / "j.npy"), str(tmp_path / "o.npy"),
                   "--dataset", "humanml3d"]) == 2
  assert "has 21 joints; humanml3d expects 22" in capsys.readouterr().err
  np.save(tmp_path / "f.npy", np.zeros((30, 100), np.float32))
  assert cli.main(["data", "to-joints", str(tmp_path / "f.npy"), str(tmp_path / "o.npy")]) == 2
  assert "no skeleton has 100-d features" in capsys.readouterr().err
  assert not (tmp_path / "o.npy").exists()


def test_kit_conversion(tmp_path):
  from mgpt_jax.data.skeletons import KIT
  rest = F.forward_kinematics(np.tile([1.0, 0, 0, 0], (2, 21, 1)), np.zeros((2, 3)), KIT)
  rest[1, :, 2] += 10.0
  np.save(tmp_path / "j.npy", rest)
  assert cli.main(["data", "to-features", str(tmp_path / "j.npy"), str(tmp_path / "f.npy")]) == 0
  assert np.load(tmp_path / "f.npy").shape == (1, 251)
