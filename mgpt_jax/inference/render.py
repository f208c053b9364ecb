"""Skeleton animations of joint positions, as GIF (always) or MP4 (where ffmpeg is installed).

    render_motion(joints, "walk.gif")                 # (T, 22, 3) HumanML3D joints, y up
    render_motion(joints, "walk.mp4", title="a person walks", follow=True)

Figures are built without pyplot (a bare Figure on the Agg canvas), so rendering
never needs a display and never changes the process's matplotlib backend.
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib import animation
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from mgpt_jax.atomic_io import atomic_path
from mgpt_jax.data.skeletons import Skeleton, get_skeleton, skeleton_for_joints

FORMATS = (".gif", ".mp4")
CHAIN_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
_MARGIN = 0.1  # metres (data units) of room around the body


def _format_of(out_path) -> str:
  ext = os.path.splitext(os.fspath(out_path))[1].lower()
  if ext not in FORMATS:
    raise ValueError(f"cannot render to {os.fspath(out_path)!r}: the extension picks the format, "
                     f"expected one of {FORMATS}")
  if ext == ".mp4" and not animation.writers.is_available("ffmpeg"):
    raise RuntimeError(f"cannot write {os.fspath(out_path)!r}: no MP4 encoder (ffmpeg) is "
                       "installed; install ffmpeg, or render to .gif, which always works")
  return ext


def _check_joints(joints, skeleton: Skeleton | str | None) -> tuple[np.ndarray, Skeleton]:
  joints = np.asarray(joints, np.float64)
  if joints.ndim != 3 or joints.shape[-1] != 3:
    hint = " (features? convert with features_to_joints first)" if joints.ndim == 2 else ""
    raise ValueError(f"joints of shape {joints.shape} given; expected (T, J, 3){hint}")
  if isinstance(skeleton, str):
    skeleton = get_skeleton(skeleton)
  elif skeleton is None:
    skeleton = skeleton_for_joints(joints.shape[1])
  if joints.shape[1] != skeleton.num_joints:
    raise ValueError(f"joints of shape {joints.shape} have {joints.shape[1]} joints; the "
                     f"{skeleton.name} skeleton has {skeleton.num_joints}")
  if len(joints) == 0:
    raise ValueError("joints have no frames")
  if not np.isfinite(joints).all():
    raise ValueError("joints contain NaN or Inf values")
  return joints, skeleton


def _to_plot(points: np.ndarray) -> np.ndarray:
  """Data (x, y up, z) to matplotlib's z-up axes as (x, -z, y): a rotation, so nothing mirrors."""
  return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


def render_motion(joints, out_path: str | os.PathLike, skeleton: Skeleton | str | None = None,
                  fps: float | None = None, title: str | None = None, *, follow: bool = False,
                  dpi: int = 60, figsize: tuple[float, float] = (4.0, 4.0),
                  elev: float = 20.0, azim: float = -60.0) -> str:
  """Renders joints (T, J, 3), y up, to out_path (.gif or .mp4); returns the path.

  skeleton: a Skeleton or dataset name; by default the one with J joints.
  fps: defaults to the skeleton's. follow: the view moves with the root instead
  of fixed limits fitting the whole motion. dpi and figsize set the frame size
  (the defaults give 240x240 frames, quick enough for tests).
  """
  ext = _format_of(out_path)  # before any work, so a missing encoder fails fast
  joints, skeleton = _check_joints(joints, skeleton)
  fps = skeleton.fps if fps is None else float(fps)
  if not np.isfinite(fps) or fps <= 0:
    raise ValueError(f"fps must be a positive number, got {fps}")

  floor = joints[..., 1].min()  # HumanML3D puts the floor at the lowest joint of the clip
  points = _to_plot(joints)
  trajectory = _to_plot(joints[:, 0] * [1.0, 0.0, 1.0] + [0.0, floor, 0.0])
  # Half-width of the cube shown: the whole motion, or one body around the root.
  extent = points - points[:, :1] if follow else points
  half = (extent.max(axis=(0, 1)) - extent.min(axis=(0, 1))).max() / 2 + _MARGIN
  whole_centre = (points.max(axis=(0, 1)) + points.min(axis=(0, 1))) / 2

  fig = Figure(figsize=figsize, dpi=dpi)
  fig.subplots_adjust(left=0, right=1, bottom=0, top=0.92 if title else 1)  # no empty border
  ax = fig.add_subplot(projection="3d")
  ax.view_init(elev=elev, azim=azim)
  ax.set_box_aspect((1, 1, 1))
  ax.set_axis_off()
  if title:
    ax.set_title(title, fontsize=8, wrap=True)
  # The floor spans everything the root visits, plus a body's room, so a following view sees it too.
  lo = trajectory.min(0) - half
  hi = trajectory.max(0) + half
  ax.add_collection3d(Poly3DCollection(
      [[(lo[0], lo[1], floor), (hi[0], lo[1], floor), (hi[0], hi[1], floor), (lo[0], hi[1], floor)]],
      facecolor=(0.5, 0.5, 0.5, 0.25), edgecolor="none"))
  path_line, = ax.plot([], [], [], color="#555555", linewidth=1.0)
  chain_lines = [ax.plot([], [], [], color=CHAIN_COLOURS[i % len(CHAIN_COLOURS)], linewidth=2.0,
                         marker="o", markersize=2)[0] for i in range(len(skeleton.chains))]

  def draw(t: int) -> None:
    centre = points[t, 0] if follow else whole_centre
    height = whole_centre[2] if follow else centre[2]  # keep the floor steady when following
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(height - half, height + half)
    path_line.set_data_3d(*trajectory[:t + 1].T)
    for line, chain in zip(chain_lines, skeleton.chains):
      line.set_data_3d(*points[t, list(chain)].T)

  if ext == ".gif":
    writer = animation.PillowWriter(fps=fps)
  else:  # yuv420p: the pixel format every player accepts
    writer = animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])
  with atomic_path(out_path) as tmp:
    # Pillow and ffmpeg pick the container from the name, so encode to a name with the
    # right extension, then move it onto the temporary name that atomic_path publishes.
    named = tmp + ext
    try:
      with writer.saving(fig, named, dpi):
        for t in range(len(points)):
          draw(t)
          writer.grab_frame()
      os.replace(named, tmp)
    finally:
      if os.path.exists(named):
        os.remove(named)
  return os.fspath(out_path)
