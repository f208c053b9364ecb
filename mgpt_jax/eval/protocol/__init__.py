"""The paper's evaluation protocol over a bundle: samples, per-task metrics, reports."""
