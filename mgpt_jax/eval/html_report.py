"""One self-contained HTML page of a run: loss curves, evaluation tables, animations.

Everything is inlined (PNG curves and GIF animations as data URIs), so the file can be
mailed or opened anywhere. Curves are read from the TensorBoard event files every run
directory already holds, so any stage's logs can be shown the same way.
"""
from __future__ import annotations

import base64
import dataclasses
import glob
import html
import io
import os
import time

import numpy as np

from mgpt_jax import atomic_io


def scalar_series(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} of every scalar in the event files under `logdir`."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  series: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"),
                               recursive=True)):
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
      for event in acc.Tensors(tag):
        value = tensor_util.make_ndarray(event.tensor_proto)
        if value.size == 1 and np.issubdtype(value.dtype, np.number):
          series.setdefault(tag, {})[int(event.step)] = float(value)
  return {tag: sorted(points.items()) for tag, points in series.items()}


def curves_png(title: str, series: dict[str, list[tuple[int, float]]],
               tags: tuple[str, ...]) -> bytes | None:
  """A PNG of the chosen tags against the step (None when none of them was logged)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  shown = [t for t in tags if len(series.get(t, [])) > 0]
  if not shown:
    return None
  fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=100)
  for tag in shown:
    steps, values = zip(*series[tag])
    ax.plot(steps, values, marker="o" if len(steps) < 4 else None, label=tag)
  ax.set_title(title)
  ax.set_xlabel("step")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png")
  plt.close(fig)
  return buffer.getvalue()


@dataclasses.dataclass
class Animation:
  title: str
  path: str  # a GIF


@dataclasses.dataclass
class Report:
  title: str
  curves: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)  # (caption, PNG)
  tables: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (heading, Markdown)
  animations: list[list[Animation]] = dataclasses.field(default_factory=list)  # rows of cells
  notes: list[str] = dataclasses.field(default_factory=list)

  def add_curves(self, name: str, logdir: str, tags: tuple[str, ...]) -> None:
    png = curves_png(name, scalar_series(logdir), tags) if os.path.isdir(logdir) else None
    if png is not None:
      self.curves.append((name, png))

  def write(self, path: str) -> str:
    atomic_io.write_text(path, self.html())
    return os.path.abspath(path)

  def html(self) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(self.title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{_e(self.title)}</h1>",
             f"<p class='when'>{time.strftime('%Y-%m-%d %H:%M')}</p>"]
    parts += [f"<p>{_e(n)}</p>" for n in self.notes]
    if self.curves:
      parts.append("<h2>Training curves</h2><div class='grid'>")
      parts += [f"<figure><img src='{_uri(png, 'image/png')}' alt='{_e(name)}'></figure>"
                for name, png in self.curves]
      parts.append("</div>")
    if self.animations:
      parts.append("<h2>Prompts and motions</h2><table class='anim'>")
      for row in self.animations:
        parts.append("<tr>" + "".join(_animation_cell(a) for a in row) + "</tr>")
      parts.append("</table>")
    for heading, markdown in self.tables:
      parts.append(f"<h2>{_e(heading)}</h2>{markdown_table(markdown)}")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _animation_cell(animation: Animation) -> str:
  if not os.path.exists(animation.path):
    return f"<td><p>{_e(animation.title)}</p><p>(no animation)</p></td>"
  with open(animation.path, "rb") as f:
    uri = _uri(f.read(), "image/gif")
  return (f"<td><figure><img src='{uri}' alt='{_e(animation.title)}'>"
          f"<figcaption>{_e(animation.title)}</figcaption></figure></td>")


def markdown_table(markdown: str) -> str:
  """The project's Markdown tables (header, rule, rows) as an HTML table; other text as <pre>."""
  lines = [l.strip() for l in markdown.strip().splitlines()]
  rows = [l for l in lines if l.startswith("|")]
  if len(rows) < 2:
    return f"<pre>{_e(markdown)}</pre>"
  cells = lambda line: [c.strip() for c in line.strip("|").split("|")]
  out = ["<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cells(rows[0])) +
         "</tr></thead><tbody>"]
  for line in rows[2:]:
    out.append("<tr>" + "".join(f"<td>{_e(c.replace('**', ''))}</td>" for c in cells(line)) +
               "</tr>")
  out.append("</tbody></table>")
  rest = [l for l in lines if l and not l.startswith("|")]
  if rest:
    out.append(f"<pre>{_e(chr(10).join(rest))}</pre>")
  return "".join(out)


def _uri(data: bytes, mime: str) -> str:
  return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _e(text: str) -> str:
  return html.escape(str(text), quote=True)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { margin-bottom: 0; } .when { color: #777; margin-top: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.anim td { text-align: center; vertical-align: top; border: none; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } img { max-width: 100%; } figcaption { font-size: .9em; max-width: 480px; }
tr:last-child td { font-weight: 600; }
"""
