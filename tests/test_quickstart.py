"""`mgpt quickstart` end to end with the smallest settings, and its resume."""
import json
import os

from mgpt_jax import cli


def test_quickstart_runs_and_resumes(tmp_path, capsys):
  out = str(tmp_path / "qs")
  args = ["quickstart", "--out", out, "--num-motions", "60", "--tokenizer-steps", "30",
          "--lm-steps", "25", "--evaluator-steps", "40", "--replications", "2",
          "--mm-texts", "2", "--mm-repeats", "3"]
  assert cli.main(args) == 0
  printed = capsys.readouterr().out
  assert "reconstruction at step 30" in printed and "quickstart finished" in printed
  assert printed.count("train loss") == 2  # stages 2 and 3
  assert "contrastive loss" in printed and "ground-truth matching on val" in printed
  assert printed.count("| Real |") == 5  # t2m, m2t, pred, inbetween, recon tables
  assert "| method | R Top1 | R Top2 | R Top3 | FID | MM-Dist | Diversity | MModality |" in printed
  assert "caption retrieval" in printed or "semantic checks skipped" in printed
  assert "caption of test motion" in printed
  for row in ("caption retrieval", "random motion", "motion retrieval", "hold last pose",
              "linear interpolation"):
    assert f"| {row} |" in printed, row  # every table carries its baselines
  assert printed.count("prompt sensitivity") == 2  # validation of stages 2 and 3
  outputs = printed[printed.index("quickstart finished"):].splitlines()
  assert outputs[1].split() == ["report", os.path.join(os.path.abspath(out), "report.html")]
  assert "wall time per step" in printed and "| 13. report |" in printed
  with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
    page = f.read()
  assert page.count("data:image/png;base64,") >= 4  # loss curves of the stages
  assert page.count("data:image/gif;base64,") == 9  # 4 prompts + their ground truth + a caption
  assert "a person jumps up twice." in page and "<th>R Top1</th>" in page
  for name in ("data/all.txt", "tokenizer/assets/vq_config.json", "tokenizer/summary.json",
               "pretrain/summary.json", "instruct/assets/sentencepiece.model",
               "instruct/checkpoints/25", "evaluator/config.json", "bundle/manifest.json",
               "samples/prompt_3.gif", "samples/prompt_0.npy", "eval/eval_t2m.json",
               "samples/prompt_3_ground_truth.gif", "report.html",
               "eval/eval_recon.json"):
    assert os.path.exists(os.path.join(out, name)), name
  assert len(os.listdir(os.path.join(out, "data", "TOKENS"))) >= 60
  # A second run keeps what is there: no new training steps, same outputs.
  assert cli.main(args) == 0
  again = capsys.readouterr().out
  assert "found" in again and "train loss" not in again and "contrastive loss" not in again
  assert again.count("| Real |") == 5  # the saved tables, printed again

  # `mgpt eval` on the quickstart's outputs: the CLI path of one task.
  out_json = os.path.join(out, "cli_pred.json")
  assert cli.main(["eval", "--bundle", os.path.join(out, "bundle"), "--data",
                   os.path.join(out, "data"), "--evaluator", os.path.join(out, "evaluator"),
                   "--task", "pred", "--replications", "1", "--json", out_json]) == 0
  printed = capsys.readouterr().out
  assert "| method | FID | Diversity | ADE | FDE |" in printed and out_json in printed
  with open(out_json, encoding="utf-8") as f:
    record = json.load(f)
  assert record["task"] == "pred" and record["rows"]["model"]["fid"]["n"] == 1
