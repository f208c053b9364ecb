"""Motion-to-text caption metrics against hand-computed values (COCO scorers, BERTScore)."""
from __future__ import annotations

import math
import socket
import sys
import time

import pytest

from mgpt_jax.eval.metrics.text import bert_score_f1, caption_metrics, normalize_caption

# ------------------------------------------------------------------ normalize_caption

@pytest.mark.parametrize("raw, expected", [
    ("A person walks forward.", "a person walks forward"),
    ("  The man\twalks,then   turns LEFT! ", "the man walks then turns left"),
    ("a person's arm", "a persons arm"),  # apostrophes join
    ("turns counter-clockwise", "turns counterclockwise"),  # hyphens join (T2M drops "-")
    ("forward/backward (twice)", "forward backward twice"),
    ("he\u2019s \u201cjumping\u201d", "hes jumping"),  # unicode quotes
    ("...", ""),
])
def test_normalize_caption(raw, expected):
  assert normalize_caption(raw) == expected


def test_normalize_caption_rejects_non_str():
  with pytest.raises(TypeError, match="caption must be a str"):
    normalize_caption(None)


# ------------------------------------------------------------------ BLEU and ROUGE-L
# The COCO BLEU is corpus-level: clipped n-gram matches and n-gram counts are summed over motions,
# p_n = matches / count, BLEU@N = BP * (p_1 ... p_N)^(1/N); the reference length of a motion is
# the reference length closest to the hypothesis length (ties: the shorter), and
# BP = exp(1 - ref_len / hyp_len) when the summed hyp_len < ref_len. It adds 1e-15 to matches
# and 1e-9 to counts, hence the tolerances. ROUGE-L per motion: P = max over refs of
# LCS / len(hyp), R = max over refs of LCS / len(ref) (maxima taken separately),
# F = (1 + b^2) P R / (R + b^2 P) with b = 1.2; the score is the mean over motions.

def test_bleu_rouge_one_motion_two_references():
  # hyp "a man walks forward slowly" (5 words); refs of 4 and 5 words -> closest 5, BP = 1.
  # 1-grams: all 5 in some ref -> 5/5. 2-grams: a man, man walks, walks forward match;
  # "forward slowly" does not ("slowly forward" is in ref 2) -> 3/4.
  # 3-grams: "a man walks", "man walks forward" -> 2/3. 4-grams: "a man walks forward" -> 1/2.
  # BLEU@1 = 1; BLEU@4 = (1 * 3/4 * 2/3 * 1/2)^(1/4) = (1/4)^(1/4) = 0.70711.
  # ROUGE-L: ref 1 LCS 4 -> P 4/5, R 4/4; ref 2 LCS 3 ("man walks slowly") -> P 3/5, R 3/5.
  # P = 0.8, R = 1 -> F = 2.44 * 0.8 / (1 + 1.44 * 0.8) = 1.952 / 2.152 = 0.907063.
  m = caption_metrics(["A man walks forward, slowly."],
                      [["a man walks forward", "The man walks slowly forward."]])
  assert m["bleu_1"] == pytest.approx(100.0, abs=1e-5)
  assert m["bleu_4"] == pytest.approx(100 * 0.25 ** 0.25, abs=1e-5)
  assert m["rouge_l"] == pytest.approx(100 * 1.952 / 2.152, abs=1e-9)
  assert m["length_avg"] == 5.0


def test_bleu_rouge_clipping_and_brevity_penalty():
  # Motion 1: hyp "the the man" (3); refs of 3 and 5 words -> closest 3.
  #   1-grams: "the" x2 clipped to 1 (max count in one ref) + "man" -> 2 of 3;
  #   2-grams: "the man" matches, "the the" not -> 1 of 2; 3-grams: 0 of 1.
  # Motion 2: hyp "person jumps" (2); ref of 4 words. 1-grams 2 of 2; 2-grams 1 of 1.
  # Corpus: p1 = 4/5, p2 = 2/3, p3 = 0/1, hyp_len 5 < ref_len 3 + 4 = 7 -> BP = exp(1 - 7/5).
  # BLEU@1 = 0.8 * exp(-0.4) = 0.536256; BLEU@4 ~ 0 (p3 = 0; the smoothing leaves ~3e-6).
  # ROUGE-L motion 1: "the man walks" LCS 2 -> P 2/3, R 2/3; "a man is walking forward" LCS 1
  #   -> P 1/3, R 1/5; F(2/3, 2/3) = 2/3. Motion 2: LCS 2 -> P 1, R 2/4 ->
  #   F = 2.44 * 0.5 / (0.5 + 1.44) = 1.22 / 1.94 = 0.628866. Mean = 0.647766.
  m = caption_metrics(["the the man", "person jumps"],
                      [["the man walks", "a man is walking forward"], ["a person jumps high"]])
  assert m["bleu_1"] == pytest.approx(80 * math.exp(-0.4), abs=1e-6)
  assert m["bleu_4"] == pytest.approx(0.0, abs=1e-3)
  assert m["rouge_l"] == pytest.approx(100 * (2 / 3 + 1.22 / 1.94) / 2, abs=1e-9)
  assert m["length_avg"] == 2.5


def test_bleu_closest_reference_length_tie_takes_shorter():
  # hyp of 4 words, refs of 5 and 3 words: both 1 away -> ref_len 3, no brevity penalty,
  # and every n-gram is in ref 1 -> BLEU@1 = BLEU@4 = 1. (Ref 5 would give BP exp(-1/4).)
  m = caption_metrics(["a man walks forward"], [["a man walks forward slowly", "a person walks"]])
  assert m["bleu_1"] == pytest.approx(100.0, abs=1e-5)
  assert m["bleu_4"] == pytest.approx(100.0, abs=1e-5)


# ------------------------------------------------------------------ CIDEr (CIDEr-D)
# For each motion, n = 1..4: tf-idf vectors g(w) = tf(w) * (log(#motions) - log(max(1, df(w))))
# where df counts the motions whose references contain the n-gram; the similarity with a
# reference is sum_w min(g_hyp, g_ref) * g_ref / (|g_hyp| |g_ref|) (0 where a norm is 0) times
# exp(-delta^2 / (2 * 6^2)), delta the difference of the lengths the scorer counts (it counts
# bigrams, i.e. words - 1). Per motion: mean over n, mean over refs, x10; corpus: mean over motions.

def test_cider_perfect_captions_disjoint_motions():
  # Every n-gram is in one motion only: weight log 2, the hypothesis vector equals the reference
  # vector for n = 1..4 (4-word captions) -> cosine 1 each, delta 0 -> 10 per motion -> 1000.
  m = caption_metrics(["a person walks forward", "someone jumps up high"],
                      [["a person walks forward"], ["someone jumps up high"]])
  assert m["cider"] == pytest.approx(1000.0, abs=1e-9)


def test_cider_partial_overlap_by_hand():
  # 2 motions; "a" occurs in both -> weight log 2 - log 2 = 0; every other n-gram weight L = log 2.
  # Motion 1: hyp "a man walks" vs ref "a man walks forward":
  #   n=1: hyp {man, walks} (L each), ref {man, walks, forward} -> 2L^2 / (sqrt2 L sqrt3 L) = sqrt(2/3)
  #   n=2: hyp {a man, man walks}, ref 3 bigrams incl. both -> sqrt(2/3)
  #   n=3: hyp {a man walks}, ref {a man walks, man walks forward} -> 1 / sqrt2
  #   n=4: no hypothesis 4-gram -> 0.   Bigram counts 2 vs 3 -> delta -1 -> exp(-1/72).
  #   score = 10 * exp(-1/72) * (2 sqrt(2/3) + 1/sqrt2) / 4 = 5.8196
  # Motion 2: hyp "a woman jumps", refs "a woman jumps" (n=1..3 cosine 1, n=4 none -> 3/4) and
  #   "she hops" (no shared n-gram -> 0): score = 10 * (3/4 + 0) / 2 = 3.75.
  # CIDEr = (5.8196 + 3.75) / 2 = 4.78 -> 478.
  motion1 = 10 * math.exp(-1 / 72) * (2 * math.sqrt(2 / 3) + 1 / math.sqrt(2)) / 4
  m = caption_metrics(["a man walks", "a woman jumps"],
                      [["a man walks forward"], ["a woman jumps", "she hops"]])
  assert m["cider"] == pytest.approx(100 * (motion1 + 3.75) / 2, abs=1e-9)


def test_cider_prefers_the_right_caption():
  refs = [["a person walks forward slowly", "someone walks ahead"],
          ["a person jumps up and down", "a man hops in place"],
          ["a person waves with the right hand", "someone waves hello"]]
  right = caption_metrics(["a person walks forward", "a person jumps up", "someone waves"], refs)
  wrong = caption_metrics(["a person waves", "a person walks ahead", "a man jumps"], refs)
  # The wrong captions share with their references only n-grams that occur in the
  # references of all 3 motions ("a", "person", "a person"): weight log 3 - log 3 = 0.
  assert right["cider"] > 100 > wrong["cider"] == 0.0
  assert caption_metrics(["walk"], [["walk"]])["cider"] == 0.0  # one motion: every idf is 0


# ------------------------------------------------------------------ input errors

@pytest.mark.parametrize("hyps, refs, error, match", [
    ([], [], ValueError, "no hypotheses"),
    (["a"], [["a"], ["b"]], ValueError, "1 hypotheses but 2 reference lists"),
    (["a", "b"], [["a"], []], ValueError, "motion 1 has no non-blank reference"),
    (["a"], [["...", "  "]], ValueError, "motion 0 has no non-blank reference"),
    (["a"], ["a man walks"], TypeError, r"references\[0\] must be a list"),
    ("a man walks", [["a man walks"]], TypeError, "hypotheses must be a sequence"),
    ([None], [["a"]], TypeError, "caption must be a str"),
])
def test_caption_metrics_errors(hyps, refs, error, match):
  with pytest.raises(error, match=match):
    caption_metrics(hyps, refs)


def test_blank_references_are_dropped_and_empty_hypotheses_score_zero():
  m = caption_metrics(["", "a person walks"], [["a man jumps", " "], ["a person walks", "!"]])
  assert m["length_avg"] == 1.5
  assert m["rouge_l"] == pytest.approx(50.0)  # motion 0 scores 0, motion 1 scores 1


# ------------------------------------------------------------------ BERTScore

_WORDS = "a person walks forward slowly man jumps up and down turns left right".split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
  """A 2-layer random BERT saved locally: nothing to download."""
  pytest.importorskip("bert_score")
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  path = tmp_path_factory.mktemp("tiny_bert")
  (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _WORDS)
                                  + "\n")
  # model_max_length: bert_score truncates to it, and the unset default overflows.
  tokenizer = transformers.BertTokenizer(str(path / "vocab.txt"), model_max_length=64)
  config = transformers.BertConfig(vocab_size=len(_WORDS) + 5, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64,
                                   max_position_embeddings=64)
  torch.manual_seed(0)
  transformers.BertModel(config).save_pretrained(str(path))
  tokenizer.save_pretrained(str(path))
  return str(path)


@pytest.fixture
def offline(monkeypatch):
  """Fails any attempt to open a network connection."""
  def no_network(*args, **kwargs):
    raise AssertionError("bert_score_f1 tried to open a network connection")
  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "create_connection", no_network)


def _f1(hyps, refs, model, **kw):
  kw = {"num_layers": 2, "rescale_with_baseline": False, "idf": False, **kw}
  return bert_score_f1(hyps, refs, model=model, **kw)


def test_bert_score_identical_and_different(tiny_bert, offline):
  same, note = _f1(["a person walks forward"], [["a person walks forward"]], tiny_bert)
  assert note == ""
  assert same == pytest.approx(100.0, abs=1e-3)
  other, _ = _f1(["a man jumps up and down"], [["a person walks forward"]], tiny_bert)
  assert other < same - 1.0
  best, _ = _f1(["a person walks forward"], [["a man jumps", "a person walks forward"]], tiny_bert)
  assert best == pytest.approx(100.0, abs=1e-3)  # the best reference counts


def test_bert_score_matches_bert_score_score(tiny_bert):
  bert_score = pytest.importorskip("bert_score")
  hyps = ["a person walks forward", "a man turns left"]
  refs = [["a person walks slowly", "a man walks forward"], ["a person turns right"]]
  ours, _ = _f1(hyps, refs, tiny_bert, idf=True)
  _, _, f = bert_score.score(hyps, refs, model_type=tiny_bert, num_layers=2, idf=True, nthreads=0)
  assert ours == pytest.approx(100 * float(f.mean()), abs=1e-4)


def test_bert_score_empty_hypothesis_scores_zero(tiny_bert):
  # bert_score gives an empty candidate raw F1 0 (and crashes on it under transformers 5).
  both, _ = _f1(["", "a man turns left"], [["a person walks"], ["a person turns right"]], tiny_bert)
  one, _ = _f1(["a man turns left"], [["a person turns right"]], tiny_bert)
  assert both == pytest.approx(one / 2, abs=1e-4)


def test_bert_score_baseline_rescaling_and_fallback(tiny_bert, tmp_path):
  import shutil

  import bert_score
  import numpy as np
  raw, _ = _f1(["a man turns left"], [["a person turns right"]], tiny_bert)
  same, note = _f1(["a man turns left"], [["a person turns right"]], tiny_bert,
                   rescale_with_baseline=True)
  assert same == pytest.approx(raw) and "not rescaled" in note  # no baseline for "tiny_bert0"
  # A directory named like a model bert_score ships a baseline for uses that baseline.
  named = shutil.copytree(tiny_bert, tmp_path / "bert-base-uncased")
  rescaled, note = _f1(["a man turns left"], [["a person turns right"]], str(named),
                       rescale_with_baseline=True)
  table = np.loadtxt(f"{bert_score.__path__[0]}/rescale_baseline/en/bert-base-uncased.tsv",
                     delimiter=",", skiprows=1)
  b = table[2, 3]  # row = num_layers, column F
  assert note == ""
  assert rescaled == pytest.approx(100 * ((raw / 100 - b) / (1 - b)), abs=1e-4)


def test_bert_score_unknown_layer_count(tiny_bert):
  with pytest.raises(ValueError, match="num_layers is required"):
    bert_score_f1(["a"], [["a"]], model=tiny_bert)


def test_roberta_tokenizer_keeps_prefix_space(tmp_path):
  # bert_score's add_prefix_space=True argument to encode() is ignored by transformers 5.
  import json

  bs_utils = pytest.importorskip("bert_score.utils")
  transformers = pytest.importorskip("transformers")
  from mgpt_jax.eval.metrics.text import _load_tokenizer
  vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "p", "e", "r", "s", "o", "n", "w", "a", "l",
           "k", "\u0120", "pe", "per", "pers", "perso", "person", "\u0120person", "wa", "wal",
           "walk", "walks", "\u0120walks"]
  merges = ["p e", "pe r", "per s", "pers o", "perso n", "\u0120 person", "w a", "wa l", "wal k",
            "walk s", "\u0120 walks"]
  (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
  (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
  transformers.RobertaTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                                model_max_length=64).save_pretrained(str(tmp_path / "tok"))
  tokenizer = _load_tokenizer(str(tmp_path / "tok"))
  ids = bs_utils.sent_encode(tokenizer, "person walks")
  assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "\u0120person", "\u0120walks", "</s>"]


def test_bert_score_model_from_the_hugging_face_cache(tiny_bert, tmp_path, monkeypatch, offline):
  import shutil

  constants = pytest.importorskip("huggingface_hub.constants")
  # The cache layout: models--{org}--{name}/refs/main holds the commit of snapshots/{commit}.
  repo = tmp_path / "hub" / "models--mgpt-jax-tests--tiny-bert"
  commit = "0" * 40
  shutil.copytree(tiny_bert, repo / "snapshots" / commit)
  (repo / "refs").mkdir()
  (repo / "refs" / "main").write_text(commit)
  monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
  value, note = _f1(["a person walks forward"], [["a person walks forward"]],
                    "mgpt-jax-tests/tiny-bert")
  assert value == pytest.approx(100.0, abs=1e-3) and note == ""


def test_bert_score_missing_model_is_reported_offline(offline):
  start = time.perf_counter()
  value, reason = bert_score_f1(["a man walks"], [["a person walks"]],
                                model="mgpt-jax-tests/no-such-model")
  assert value is None
  assert time.perf_counter() - start < 10
  try:
    import bert_score  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  except ImportError:
    assert "not installed" in reason
  else:
    assert "'mgpt-jax-tests/no-such-model' not found locally" in reason


def test_bert_score_without_the_package(monkeypatch):
  monkeypatch.setitem(sys.modules, "bert_score", None)  # makes `import bert_score` fail
  value, reason = bert_score_f1(["a man walks"], [["a person walks"]])
  assert value is None and "bert_score is not installed" in reason
