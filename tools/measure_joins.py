"""A long motion by chained generation, rendered, with its joins measured against real data.

    python tools/measure_joins.py BUNDLE --text "a person walks forward" --seconds 30 \
        --data-dir DATA --gif out.gif

At each join (the first frame of a continuation) it prints the root's move and the largest
joint move relative to the root (the pose change) between the frames on either side, beside
the largest per-frame change of the motions in DATA/new_joints (the data's own limit) and of
the generated motion away from its joins.
"""
from __future__ import annotations

import argparse
import glob
import os

import numpy as np

from mgpt_jax.data.features import features_to_joints
from mgpt_jax.inference import chain
from mgpt_jax.inference.motiongpt import MotionGPT


def per_frame_changes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(root move, largest joint move relative to the root) between consecutive frames."""
  root = np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1)
  local = joints - joints[:, :1]
  pose = np.linalg.norm(np.diff(local, axis=0), axis=-1).max(-1)
  return root, pose


def data_limits(data_dir: str, limit: int = 2000) -> tuple[float, float, int]:
  files = sorted(glob.glob(os.path.join(data_dir, "new_joints", "*.npy")))[:limit]
  root = pose = 0.0
  for path in files:
    r, p = per_frame_changes(np.load(path, allow_pickle=False).astype(np.float32))
    root, pose = max(root, float(r.max())), max(pose, float(p.max()))
  return root, pose, len(files)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("bundle")
  parser.add_argument("--text", default="a person walks forward")
  parser.add_argument("--seconds", type=float, default=30.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data-dir", required=True, help="a dataset with new_joints/*.npy")
  parser.add_argument("--gif", default=None)
  args = parser.parse_args()
  system = MotionGPT.load(args.bundle)
  [(_, first)] = system.text_to_motion([args.text], seed=args.seed)
  target = int(np.ceil(args.seconds * system.fps / system.frames_per_token))
  [codes], [segments] = chain.extend(system, [first], target, args.seed)
  [features] = system.decode_codes([codes])
  joints = features_to_joints(features)
  root, pose = per_frame_changes(joints)
  joins = [j - 1 for j in chain.join_frames(segments, system.frames_per_token)]
  data_root, data_pose, count = data_limits(args.data_dir)
  away = np.setdiff1d(np.arange(len(root)), joins)
  print(f"{len(joints)} frames ({len(joints) / system.fps:.1f} s), {len(codes)} codes in "
        f"{len(segments)} segments {segments}, {len(joins)} joins")
  print("per-frame change (m)       root   pose")
  print(f"  data's largest ({count:4} motions) {data_root:.3f}  {data_pose:.3f}")
  print(f"  generated, away from joins   {root[away].max():.3f}  {pose[away].max():.3f}")
  if joins:
    print(f"  generated, at the joins      {root[joins].max():.3f}  {pose[joins].max():.3f}")
    ok = root[joins].max() <= data_root and pose[joins].max() <= data_pose
    print(f"joins within the data's largest per-frame change: {'yes' if ok else 'NO'}")
  if args.gif:
    from mgpt_jax.inference.render import render_motion  # pylint: disable=g-import-not-at-top
    render_motion(joints, args.gif, fps=system.fps)
    print(f"wrote {args.gif}")


if __name__ == "__main__":
  main()
