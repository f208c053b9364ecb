"""Motion-to-text caption metrics: BLEU@1/@4, ROUGE-L, CIDEr and BERTScore F1.

MotionGPT (Table 4) scores each generated caption against all ground-truth captions of its
motion with the MS-COCO caption scorers (via nlg-eval); the n-gram metrics here call the same
scorers from pycocoevalcap. References are the raw captions, normalized like the hypotheses
(the released code scored lemmatised tokens instead; the paper describes raw text).
All scores are in the paper's units (x100).
"""
from __future__ import annotations

import os
import unicodedata
from collections import defaultdict
from collections.abc import Sequence

# Apostrophes and hyphens join a word ("person's" -> "persons", "counter-clockwise" ->
# "counterclockwise", as the T2M text processing drops "-"); other punctuation separates words.
_JOINERS = dict.fromkeys(map(ord, "'\u2018\u2019-\u2010\u2011"))

# bert_score's default English model (lang="en"), used by MotionGPT's evaluation.
DEFAULT_BERT_MODEL = "roberta-large"


def normalize_caption(text: str) -> str:
  """Lower-case, drop punctuation and collapse whitespace.

  The COCO scorers split on spaces (ROUGE-L on single spaces), so "forward," and "forward"
  would be different words, and a double space an empty word.
  """
  text = _stripped(text).lower().translate(_JOINERS)
  text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
  return " ".join(text.split())


def _stripped(text) -> str:
  if not isinstance(text, str):
    raise TypeError(f"a caption must be a str; got {type(text).__name__}: {text!r}")
  return text.strip()


def _check_inputs(hypotheses, references, clean) -> tuple[list[str], list[list[str]]]:
  """Cleans captions with `clean` and drops blank references; errors name the bad motion."""
  if isinstance(hypotheses, str):
    raise TypeError("hypotheses must be a sequence of captions, one per motion; got a str")
  if isinstance(references, str):
    raise TypeError("references must be a sequence of caption lists, one per motion; got a str")
  hypotheses, references = list(hypotheses), list(references)
  if not hypotheses:
    raise ValueError("no hypotheses: need at least one motion to score")
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists; "
                     "expected one reference list per hypothesis")
  hyps, refs = [], []
  for i, (hyp, ref_group) in enumerate(zip(hypotheses, references)):
    if isinstance(ref_group, str):
      raise TypeError(f"references[{i}] must be a list of captions; got the str {ref_group!r}")
    group = [r for r in map(clean, ref_group) if r]
    if not group:
      raise ValueError(f"motion {i} has no non-blank reference caption; got {list(ref_group)!r}")
    hyps.append(clean(hyp))
    refs.append(group)
  return hyps, refs


def _coco_scorers():
  try:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
  except ImportError as e:
    raise ImportError("caption metrics need pycocoevalcap: pip install 'pycocoevalcap>=1.2'") from e
  return Bleu, Rouge, Cider


def caption_metrics(hypotheses: Sequence[str],
                    references: Sequence[Sequence[str]]) -> dict[str, float]:
  """BLEU@1, BLEU@4, ROUGE-L and CIDEr (x100) of one caption per motion against its references.

  Computed with pycocoevalcap's scorers: BLEU is corpus-level with the closest reference length,
  ROUGE-L the mean over motions of the LCS F-measure (beta 1.2), CIDEr is CIDEr-D (tf-idf over
  the references of this corpus, so it depends on the whole test set). Also `length_avg`, the
  mean number of words of the normalized hypotheses.
  """
  hyps, refs = _check_inputs(hypotheses, references, normalize_caption)
  Bleu, Rouge, Cider = _coco_scorers()
  res = {i: [h] for i, h in enumerate(hyps)}
  gts = dict(enumerate(refs))
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # verbose=1 (its default) prints
  rouge, _ = Rouge().compute_score(gts, res)
  cider, _ = Cider().compute_score(gts, res)
  return {
      "bleu_1": 100.0 * float(bleu[0]),
      "bleu_4": 100.0 * float(bleu[3]),
      "rouge_l": 100.0 * float(rouge),
      "cider": 100.0 * float(cider),
      "length_avg": sum(len(h.split()) for h in hyps) / len(hyps),
  }


def _local_model_dir(model: str) -> str | None:
  """A directory holding `model`: itself, or its snapshot in the local Hugging Face cache."""
  if os.path.isdir(model):
    return model
  from huggingface_hub import snapshot_download
  try:
    # local_files_only: never touch the network, even when HF_HUB_OFFLINE is unset.
    path = snapshot_download(repo_id=model, local_files_only=True)
  except (OSError, ValueError):  # not cached, or not a valid repo id
    return None
  return path if os.path.isfile(os.path.join(path, "config.json")) else None


def _baseline_f(key: str, num_layers: int) -> float | None:
  """bert_score's rescaling baseline (English F column) for `key` at `num_layers`, if shipped."""
  import bert_score
  import numpy as np
  path = os.path.join(os.path.dirname(bert_score.__file__), "rescale_baseline", "en",
                      f"{key}.tsv")
  if not os.path.isfile(path):
    return None
  table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)  # LAYER,P,R,F rows
  if num_layers >= len(table):
    return None
  return float(table[num_layers, 3])


def _load_tokenizer(path: str):
  """bert_score's tokenizer, with RoBERTa/GPT-2's prefix space set at load time.

  bert_score passes add_prefix_space=True to encode(), which transformers 5 ignores; without
  it the first word is encoded unlike under transformers 4 and unlike the baseline files.
  """
  from transformers import AutoTokenizer, GPT2Tokenizer, RobertaTokenizer
  tokenizer = AutoTokenizer.from_pretrained(path, use_fast=False)
  if isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer)):
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=False, add_prefix_space=True)
  if tokenizer.model_max_length > 1_000_000:
    # bert_score truncates to model_max_length; the "unset" sentinel overflows the tokenizer.
    raise ValueError(f"tokenizer of {path!r} has no model_max_length (got "
                     f"{tokenizer.model_max_length}); set it in tokenizer_config.json")
  return tokenizer


def bert_score_f1(hypotheses: Sequence[str],
                  references: Sequence[Sequence[str]],
                  model: str | None = None,
                  num_layers: int | None = None,
                  rescale_with_baseline: bool = True,
                  idf: bool = True) -> tuple[float | None, str]:
  """Mean BERTScore F1 (x100), each hypothesis taking its best reference; (None, why) if unavailable.

  Defaults follow MotionGPT: roberta-large at bert_score's tuned layer (17), idf weights from
  all references, F1 rescaled with bert_score's baseline. `model` is a local directory or a
  Hugging Face name already in the local cache; nothing is downloaded. Texts are scored as
  given (stripped), not normalized. An empty hypothesis scores raw 0, as in bert_score.
  The returned note is "" unless a setting was changed (no baseline for the model).

  The steps of bert_score.score are run here from bert_score.utils so that a RoBERTa tokenizer
  keeps its prefix space under transformers 5, empty hypotheses do not crash it, and idf
  counting runs without a multiprocessing pool (forking a process that runs JAX is unsafe).
  """
  hyps, refs = _check_inputs(hypotheses, references, _stripped)
  try:
    from bert_score import utils as bs_utils
  except ImportError:
    return None, "bert_score is not installed (pip install 'bert-score>=0.3.13')"
  name = model or DEFAULT_BERT_MODEL
  path = _local_model_dir(name)
  if path is None:
    return None, (f"BERTScore model {name!r} not found locally (not a directory, not in the "
                  "Hugging Face cache); download it first, nothing is fetched here")
  # bert_score's tables are keyed by short names: "roberta-large" also matches
  # "FacebookAI/roberta-large" or a directory /models/roberta-large.
  key = name if name in bs_utils.model2layers else os.path.basename(os.path.normpath(name))
  if num_layers is None:
    if key not in bs_utils.model2layers:
      raise ValueError(f"num_layers is required for model {name!r}: bert_score has no tuned "
                       "layer for it")
    num_layers = bs_utils.model2layers[key]
  note = ""
  baseline = None
  if rescale_with_baseline:
    baseline = _baseline_f(key, num_layers)
    if baseline is None:
      note = (f"no bert_score baseline for {name!r} at layer {num_layers}; "
              "F1 is not rescaled (rescale_with_baseline=False)")

  import torch
  tokenizer = _load_tokenizer(path)
  try:
    encoder = bs_utils.get_model(path, num_layers)
  except AssertionError as e:  # bert_score checks num_layers with assert
    raise ValueError(f"num_layers={num_layers} does not fit model {name!r}: {e}") from e
  device = "cuda" if torch.cuda.is_available() else "cpu"
  encoder.to(device)
  if idf:
    idf_dict = bs_utils.get_idf_dict([r for group in refs for r in group], tokenizer, nthreads=0)
  else:
    idf_dict = defaultdict(lambda: 1.0)
    idf_dict[tokenizer.sep_token_id] = 0
    idf_dict[tokenizer.cls_token_id] = 0

  # One (hypothesis, reference) pair per reference; empty hypotheses are left out (raw F1 0).
  pair_hyps, pair_refs, spans = [], [], []
  for hyp, group in zip(hyps, refs):
    if hyp:
      spans.append((len(pair_refs), len(pair_refs) + len(group)))
      pair_hyps += [hyp] * len(group)
      pair_refs += group
    else:
      spans.append(None)
  f1 = torch.zeros(0)
  if pair_hyps:
    f1 = bs_utils.bert_cos_score_idf(encoder, pair_refs, pair_hyps, tokenizer, idf_dict,
                                     device=device)[:, 2].cpu()
  best = [float(f1[span[0]:span[1]].max()) if span else 0.0 for span in spans]
  if baseline is not None:
    best = [(f - baseline) / (1.0 - baseline) for f in best]
  return 100.0 * sum(best) / len(best), note

