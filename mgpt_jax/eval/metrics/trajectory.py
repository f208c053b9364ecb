"""ADE / FDE for motion prediction and in-between (numpy).

Per frame the error is the L2 norm of the difference of the flattened (J * 3) joint vector
(the reference's definition, not a per-joint mean). Unlike the reference (quirk 11.4, which
loops over the whole padded batch), only the frames the model produced are scored: frames
[start_t, length_t) per sequence, or an explicit boolean frame mask.
"""
from __future__ import annotations

import numpy as np


def frame_mask(lengths, num_frames: int, start_frames=None, end_frames=None):
  """Boolean (B, T) mask of frames [start_b, end_b); end defaults to lengths, start to 0."""
  lengths = np.asarray(lengths, dtype=np.int64)
  if lengths.ndim != 1:
    raise ValueError(f"lengths must be (B,); got shape {lengths.shape}")
  if np.any(lengths < 0) or np.any(lengths > num_frames):
    raise ValueError(f"lengths must lie in [0, {num_frames}]; got {lengths.tolist()}")
  start = np.zeros_like(lengths) if start_frames is None else np.asarray(start_frames, np.int64)
  end = lengths if end_frames is None else np.asarray(end_frames, np.int64)
  if start.shape != lengths.shape or end.shape != lengths.shape:
    raise ValueError(f"start/end frames must be (B,) like lengths {lengths.shape}; got "
                     f"{start.shape} and {end.shape}")
  if np.any(end > lengths):
    raise ValueError(f"end frames {end.tolist()} exceed lengths {lengths.tolist()}")
  t = np.arange(num_frames)[None, :]
  return (t >= start[:, None]) & (t < end[:, None])


def prediction_mask(lengths, num_frames: int, ratio: float = 0.2):
  """Frames [int(ratio * L), L): the part predicted after the GT prefix."""
  lengths = np.asarray(lengths, dtype=np.int64)
  return frame_mask(lengths, num_frames, start_frames=(ratio * lengths).astype(np.int64))


def inbetween_mask(lengths, num_frames: int, ratio: float = 0.25):
  """Frames [int(ratio * L), L - int(ratio * L)): the in-filled middle."""
  lengths = np.asarray(lengths, dtype=np.int64)
  keep = (ratio * lengths).astype(np.int64)
  return frame_mask(lengths, num_frames, start_frames=keep, end_frames=lengths - keep)


def ade_fde(pred_joints, gt_joints, lengths=None, start_frames=None, mask=None):
  """Average and final displacement error over the scored frames.

  Args:
    pred_joints, gt_joints: (B, T, J, 3) (any trailing shape; it is flattened per frame).
    lengths: (B,) valid lengths; with `start_frames` (B,) the scored frames are
      [start_b, length_b). Give either lengths or `mask`.
    mask: (B, T) boolean frames to score (e.g. `inbetween_mask`).

  Returns:
    (ade, fde): ADE is the per-sequence mean over scored frames, FDE the error at each
    sequence's last scored frame, both averaged over sequences, in the joints' units.
  """
  pred = np.asarray(pred_joints, dtype=np.float64)
  gt = np.asarray(gt_joints, dtype=np.float64)
  if pred.shape != gt.shape or pred.ndim < 3:
    raise ValueError(f"pred and gt must share a (B, T, ...) shape; got {pred.shape} and {gt.shape}")
  b, t = pred.shape[:2]
  if (mask is None) == (lengths is None):
    raise ValueError("give exactly one of lengths (with optional start_frames) or mask")
  if mask is None:
    if np.asarray(lengths).shape != (b,):
      raise ValueError(f"lengths must be ({b},); got shape {np.asarray(lengths).shape}")
    mask = frame_mask(lengths, t, start_frames=start_frames)
  else:
    if start_frames is not None:
      raise ValueError("start_frames only applies with lengths, not with mask")
    mask = np.asarray(mask)
    if mask.shape != (b, t) or mask.dtype != np.bool_:
      raise ValueError(f"mask must be boolean ({b}, {t}); got {mask.dtype} {mask.shape}")
  counts = mask.sum(1)
  if np.any(counts == 0):
    raise ValueError(f"sequences {np.flatnonzero(counts == 0).tolist()} have no frames to score")
  err = np.linalg.norm((pred - gt).reshape(b, t, -1), axis=-1)  # (B, T)
  ade = (err * mask).sum(1) / counts
  last = t - 1 - np.argmax(mask[:, ::-1], axis=1)  # index of each row's last true frame
  fde = err[np.arange(b), last]
  return float(ade.mean()), float(fde.mean())


def ade_fde_mm(pred_joints, gt_joints, lengths=None, start_frames=None, mask=None):
  """`ade_fde` for joints in metres, reported in millimetres."""
  ade, fde = ade_fde(pred_joints, gt_joints, lengths, start_frames, mask)
  return 1000.0 * ade, 1000.0 * fde
