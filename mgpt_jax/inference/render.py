"""Skeleton animations of joint positions, as GIF or MP4, one motion or several side by side.

    render_motion(joints, "walk.gif")                       # (T, 22, 3) HumanML3D joints, y up
    render_motion(joints, "walk.mp4", title="a person walks", follow=True)
    render_motion([generated, real], "cmp.mp4", title="a person walks",
                  titles=["generated", "ground truth"])

MP4 is encoded by the ffmpeg binary that the imageio-ffmpeg wheel ships (a system
ffmpeg is used only when the wheel is missing), so it works after `pip install`.
Frames are drawn on a bare Figure on the Agg canvas, never through pyplot, so
rendering needs no display and never changes the process's matplotlib backend.
"""
from __future__ import annotations

import os
import shutil
import textwrap
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from PIL import Image

from mgpt_jax.atomic_io import atomic_path
from mgpt_jax.data.skeletons import Skeleton, get_skeleton, skeleton_for_joints

FORMATS = (".gif", ".mp4")
CHAIN_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
DEFAULT_SIZE = 480  # pixels, the height of a frame and the width of each panel
_MARGIN = 0.1  # metres (data units) of room around the body
_DPI = 100
_MACRO_BLOCK = 16  # H.264 codes 16x16 blocks; frame sides are kept multiples of it


def ffmpeg_executable() -> str | None:
  """The ffmpeg binary: imageio-ffmpeg's bundled one, else one on PATH, else None."""
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
    return imageio_ffmpeg.get_ffmpeg_exe()
  except (ImportError, RuntimeError):
    return shutil.which("ffmpeg")


def check_output(out_path) -> str:
  """The format of `out_path` (its extension); raises before any work if it cannot be written."""
  ext = os.path.splitext(os.fspath(out_path))[1].lower()
  if ext not in FORMATS:
    raise ValueError(f"cannot render to {os.fspath(out_path)!r}: the extension picks the format, "
                     f"expected one of {FORMATS}")
  if ext == ".mp4" and ffmpeg_executable() is None:
    raise ValueError(f"cannot write {os.fspath(out_path)!r}: no MP4 encoder (ffmpeg) found; "
                     "pip install imageio-ffmpeg, or render to .gif, which always works")
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


def _as_motion_list(joints) -> list:
  """One motion (an array) or several (a list or tuple of arrays)."""
  if isinstance(joints, (list, tuple)) and joints and np.ndim(joints[0]) == 3:
    return list(joints)
  if isinstance(joints, (list, tuple)) and not joints:
    raise ValueError("no motions given to render")
  return [joints]


def _to_plot(points: np.ndarray) -> np.ndarray:
  """Data (x, y up, z) to matplotlib's z-up axes as (x, -z, y): a rotation, so nothing mirrors."""
  return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


class _Panel:
  """One motion on its own 3-D axes: the floor, the root's path and the bone chains."""

  def __init__(self, fig: Figure, rect, joints: np.ndarray, skeleton: Skeleton, half: float,
               follow: bool, elev: float, azim: float, title: str | None, fontsize: float):
    floor = joints[..., 1].min()  # HumanML3D puts the floor at the lowest joint of the clip
    self.points = _to_plot(joints)
    self.trajectory = _to_plot(joints[:, 0] * [1.0, 0.0, 1.0] + [0.0, floor, 0.0])
    self.centre = (self.points.max(axis=(0, 1)) + self.points.min(axis=(0, 1))) / 2
    self.half, self.follow, self.chains = half, follow, skeleton.chains
    self.ax = ax = fig.add_axes(rect, projection="3d")
    ax.view_init(elev=elev, azim=azim)
    ax.set_box_aspect((1, 1, 1), zoom=1.3)  # 3-D axes otherwise leave a wide empty border
    ax.set_axis_off()
    if title:
      ax.set_title(title, fontsize=fontsize, pad=0)
    # The floor spans everything the root visits, plus a body's room, so a following view sees it.
    lo = self.trajectory.min(0) - half
    hi = self.trajectory.max(0) + half
    ax.add_collection3d(Poly3DCollection(
        [[(lo[0], lo[1], floor), (hi[0], lo[1], floor), (hi[0], hi[1], floor),
          (lo[0], hi[1], floor)]], facecolor=(0.5, 0.5, 0.5, 0.25), edgecolor="none"))
    self.path_line, = ax.plot([], [], [], color="#555555", linewidth=1.0)
    self.chain_lines = [
        ax.plot([], [], [], color=CHAIN_COLOURS[i % len(CHAIN_COLOURS)], linewidth=2.5,
                marker="o", markersize=2.5)[0] for i in range(len(skeleton.chains))]

  def draw(self, t: int) -> None:
    t = min(t, len(self.points) - 1)  # a shorter motion holds its last pose
    centre = self.points[t, 0] if self.follow else self.centre
    height = self.centre[2]  # keeps the floor steady when following
    half = self.half
    self.ax.set_xlim(centre[0] - half, centre[0] + half)
    self.ax.set_ylim(centre[1] - half, centre[1] + half)
    self.ax.set_zlim(height - half, height + half)
    self.path_line.set_data_3d(*self.trajectory[:t + 1].T)
    for line, chain in zip(self.chain_lines, self.chains):
      line.set_data_3d(*self.points[t, list(chain)].T)


def _wrap(text: str, width_px: int, fontsize: float, max_lines: int = 3) -> str:
  """At most max_lines lines that fit width_px (an ellipsis where text was cut)."""
  chars = max(10, int(width_px / (0.75 * fontsize * _DPI / 72)))  # ~0.6 em a character, + room
  lines = textwrap.wrap(" ".join(text.split()), chars)
  if len(lines) > max_lines:
    lines = lines[:max_lines]
    lines[-1] = lines[-1][:chars - 1] + "…"
  return "\n".join(lines)


def render_motion(joints, out_path: str | os.PathLike, skeleton: Skeleton | str | None = None,
                  fps: float | None = None, title: str | None = None, *,
                  titles: Sequence[str | None] | None = None, follow: bool = False,
                  size: int = DEFAULT_SIZE, elev: float = 20.0, azim: float = -60.0) -> str:
  """Renders joints (T, J, 3), y up, to out_path (.gif or .mp4); returns the path.

  joints: one motion, or a list of motions drawn side by side at one scale (shorter
    ones hold their last pose until the longest ends).
  title: a caption over the whole animation (the prompt or the generated caption).
  titles: one label per motion (e.g. ["generated", "ground truth"]).
  skeleton: a Skeleton or dataset name; by default the one with J joints.
  fps: defaults to the skeleton's. follow: the view moves with the root instead of
  fixed limits fitting the whole motion. size: frame height in pixels, also the
  width of each panel (rounded up to a multiple of 16 for the video codec).
  """
  ext = check_output(out_path)  # before any work, so a missing encoder fails fast
  motions = _as_motion_list(joints)
  checked = [_check_joints(m, skeleton) for m in motions]
  motions = [m for m, _ in checked]
  if titles is not None and len(titles) != len(motions):
    raise ValueError(f"{len(titles)} titles given for {len(motions)} motions")
  fps = checked[0][1].fps if fps is None else float(fps)
  if not np.isfinite(fps) or fps <= 0:
    raise ValueError(f"fps must be a positive number, got {fps}")
  if not isinstance(size, (int, np.integer)) or size < 64:
    raise ValueError(f"size must be an integer number of pixels >= 64, got {size!r}")
  side = -(-int(size) // _MACRO_BLOCK) * _MACRO_BLOCK
  width, count = side * len(motions), len(motions)

  # One scale for every panel, so side-by-side motions compare: the half-width of the
  # cube shown fits the largest motion (or, following, the largest body around its root).
  def extent(m):
    points = _to_plot(m)
    points = points - points[:, :1] if follow else points
    return (points.max(axis=(0, 1)) - points.min(axis=(0, 1))).max() / 2
  half = max(extent(m) for m in motions) + _MARGIN

  fontsize = max(8.0, side / 40)
  fig = Figure(figsize=(width / _DPI, side / _DPI), dpi=_DPI, facecolor="white")
  canvas = FigureCanvasAgg(fig)
  top = 1.0
  if title:
    text = _wrap(title, width, fontsize * 1.2)
    fig.text(0.5, 0.985, text, ha="center", va="top", fontsize=fontsize * 1.2, wrap=False)
    top -= (text.count("\n") + 1) * fontsize * 1.2 * 1.35 / 72 * _DPI / side + 0.01
  panels = [_Panel(fig, (k / count, 0.0, 1 / count, top), m, checked[k][1], half, follow, elev,
                   azim, _wrap(titles[k], side, fontsize) if titles and titles[k] else None,
                   fontsize)
            for k, m in enumerate(motions)]

  def frames():
    for t in range(max(len(m) for m in motions)):
      for panel in panels:
        panel.draw(t)
      canvas.draw()
      yield np.asarray(canvas.buffer_rgba())[..., :3]

  with atomic_path(out_path) as tmp:
    if ext == ".gif":
      _write_gif(tmp, frames(), fps)
    else:
      _write_mp4(tmp, frames(), fps, (width, side))
  return os.fspath(out_path)


def _write_gif(path: str, frames, fps: float) -> None:
  images = [Image.fromarray(frame).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
            for frame in frames]
  images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                 duration=round(1000 / fps), loop=0, disposal=1)


def _write_mp4(path: str, frames, fps: float, size: tuple[int, int]) -> None:
  """H.264 in yuv420p (what every player and browser accepts), moov atom first for streaming."""
  import subprocess  # pylint: disable=g-import-not-at-top
  command = [ffmpeg_executable(), "-y", "-loglevel", "error", "-f", "rawvideo",
             "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", f"{fps:g}", "-i", "-",
             "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "23",
             "-movflags", "+faststart", "-f", "mp4", path]
  process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    for frame in frames:
      process.stdin.write(np.ascontiguousarray(frame).tobytes())
  except BrokenPipeError:
    pass  # ffmpeg stopped early; its message follows
  finally:
    try:
      process.stdin.close()
    except BrokenPipeError:
      pass
    error = process.stderr.read().decode(errors="replace").strip()
    code = process.wait()
  if code != 0:
    raise RuntimeError(f"ffmpeg could not encode {path!r} (exit {code}): {error[-500:]}")
