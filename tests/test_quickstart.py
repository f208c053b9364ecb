"""`mgpt quickstart` end to end with the smallest settings, and its resume."""
import os

from mgpt_jax import cli


def test_quickstart_runs_and_resumes(tmp_path, capsys):
  out = str(tmp_path / "qs")
  args = ["quickstart", "--out", out, "--num-motions", "60", "--tokenizer-steps", "30",
          "--lm-steps", "25"]
  assert cli.main(args) == 0
  printed = capsys.readouterr().out
  assert "reconstruction at step 30" in printed and "quickstart finished" in printed
  assert printed.count("train loss") == 2  # stages 2 and 3
  for name in ("data/all.txt", "tokenizer/assets/vq_config.json", "tokenizer/summary.json",
               "pretrain/summary.json", "instruct/assets/sentencepiece.model",
               "instruct/checkpoints/25"):
    assert os.path.exists(os.path.join(out, name)), name
  assert len(os.listdir(os.path.join(out, "data", "TOKENS"))) >= 60
  # A second run keeps what is there: no new training steps, same outputs.
  assert cli.main(args) == 0
  again = capsys.readouterr().out
  assert "found" in again and "train loss" not in again
