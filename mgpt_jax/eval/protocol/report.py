"""Replications -> mean ± 95 % interval, the paper-style table and the JSON record."""
from __future__ import annotations

import math

import numpy as np

# (key, header) per task, in the order of the paper's tables (§8).
COLUMNS = {
    "t2m": [("r_top1", "R Top1"), ("r_top2", "R Top2"), ("r_top3", "R Top3"), ("fid", "FID"),
            ("mm_dist", "MM-Dist"), ("diversity", "Diversity"), ("multimodality", "MModality")],
    "m2t": [("r_top1", "R Top1"), ("r_top3", "R Top3"), ("mm_dist", "MM-Dist"),
            ("length_avg", "Len_avg"), ("bleu_1", "BLEU@1"), ("bleu_4", "BLEU@4"),
            ("rouge_l", "ROUGE-L"), ("cider", "CIDEr"), ("bert_score", "BERTScore")],
    "pred": [("fid", "FID"), ("diversity", "Diversity"), ("ade", "ADE"), ("fde", "FDE")],
    "inbetween": [("fid", "FID"), ("diversity", "Diversity"), ("ade", "ADE"), ("fde", "FDE")],
    "recon": [("mpjpe_mm", "MPJPE"), ("pa_mpjpe_mm", "PA-MPJPE"), ("accl_mm", "ACCL"),
              ("fid", "FID"), ("diversity", "DIV")],
}


def summarize(values) -> dict:
  """Mean and the reference's interval 1.96 * std / sqrt(n) (population std, as T2M's code)."""
  values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if values.size == 0:
    return {"mean": None, "ci95": None, "n": 0}
  return {"mean": float(values.mean()), "ci95": float(1.96 * values.std() / np.sqrt(values.size)),
          "n": int(values.size)}


def aggregate(replications: list[dict]) -> dict:
  """{row: {metric: summary}} over replications of {"model": {...}, "real": {...}, and a dict
  per baseline}."""
  rows = {}
  names = [k for k, v in replications[0].items() if isinstance(v, dict)] if replications else []
  for row in names:
    keys = sorted({k for rep in replications for k in rep.get(row, {})})
    rows[row] = {k: summarize([rep[row].get(k) for rep in replications]) for k in keys}
  return rows


def _cell(summary: dict | None, replications: int) -> str:
  if not summary or summary["mean"] is None:
    return "–"
  text = f"{summary['mean']:.3f}"
  return text + (f"±{summary['ci95']:.3f}" if replications > 1 else "")


def format_table(task: str, rows: dict, replications: int, model_name: str = "MotionGPT") -> str:
  """A Markdown table: the Real row, the baselines' rows, then the model's row."""
  columns = COLUMNS[task]
  header = ["method"] + [h for _, h in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  baselines = [(row, row) for row in rows if row not in ("real", "model")]
  for row, name in (("real", "Real"), *baselines, ("model", model_name)):
    cells = [_cell(rows.get(row, {}).get(k), replications) for k, _ in columns]
    lines.append("| " + " | ".join([name] + cells) + " |")
  return "\n".join(lines)
