"""The motion vocabulary (layout, Python/TF agreement, identity, HF parity), motion spans, and the
SentencePiece trainer; on a small model trained here."""
import copy
import os
import pickle
import random
import re

import numpy as np
import pytest
import tensorflow as tf

from mgpt_jax.lm import motion_span, vocab as vocab_lib
from mgpt_jax.lm.sentencepiece_model import SentencePieceTrainingError, train_sentencepiece
from mgpt_jax.lm.vocab import MotionVocabulary, VocabularyError

_TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")

SUBJECTS = ["a person", "the man", "someone", "a woman", "the figure", "a child", "the dancer",
            "an athlete", "the boxer", "a character", "the soldier", "an old man", "a young girl",
            "the zombie", "the robot"]
VERBS = ["walks", "jumps", "turns", "waves", "kicks", "sits", "runs", "crouches", "stretches",
         "spins", "climbs", "throws", "catches", "bends", "steps", "hops", "dances", "punches",
         "stumbles", "crawls", "lifts", "pushes", "pulls", "swings", "shakes", "nods", "bows",
         "squats", "leans", "marches", "jogs", "skips", "slides", "twists", "rotates", "rolls",
         "kneels", "claps", "points", "reaches", "drags", "carries", "sneaks", "staggers",
         "wobbles", "salutes", "shuffles", "limps", "gallops", "tiptoes", "sways", "ducks"]
DIRECTIONS = ["forward", "backward", "to the left", "to the right", "in a circle", "upward",
              "downward", "diagonally", "in place", "around", "sideways", "towards the wall",
              "along a straight line", "up the stairs"]
PARTS = ["the right hand", "the left leg", "both arms", "the head", "the left foot", "the torso"]
OBJECTS = ["a ball", "a heavy box", "the chair", "a rope", "the railing", "an umbrella", "the door",
           "a violin", "the ladder", "a bicycle", "the table", "a small cup"]
ADVERBS = ["slowly", "quickly", "twice", "carefully", "gracefully", "three times", "happily",
           "repeatedly", "suddenly", "smoothly", "awkwardly", "energetically", "cautiously",
           "lazily", "rhythmically", "nervously", "proudly", "steadily", "clumsily", "angrily"]
PROMPTS = ["Generate text:", "Generate motion:", "Predict motion:", "Complete the masked motion:",
           "Describe the motion in words."]
SP_SIZE = 200


def motion_sentences(n, seed=0):
  rng = random.Random(seed)
  out = list(PROMPTS)
  while len(out) < n:
    s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(DIRECTIONS)}"
    r = rng.random()
    s += (f" while moving {rng.choice(PARTS)}" if r < 0.4 else
          f" holding {rng.choice(OBJECTS)}" if r < 0.7 else "")
    if rng.random() < 0.5:
      s += f" {rng.choice(ADVERBS)}"
    if rng.random() < 0.3:
      s += f" for {rng.randint(1, 12)} seconds"
    out.append(s + ("." if rng.random() < 0.8 else ","))
  return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("spm")
  texts = motion_sentences(600)
  main = train_sentencepiece(texts, str(root / "main.model"), vocab_size=SP_SIZE)
  other = train_sentencepiece(texts, str(root / "other.model"), vocab_size=SP_SIZE - 50)
  return {"main": main, "other": other, "root": root}


@pytest.fixture(scope="module")
def vocab(models):
  return MotionVocabulary(models["main"])


STRINGS = [
    "a person walks forward slowly.",
    "Generate text: <motion_id_512><motion_id_7><motion_id_513>",
    "<motion_id_512><motion_id_3><motion_id_0><motion_id_511><motion_id_513> the man jumps",
    "Complete the masked motion: <motion_id_512><motion_id_5><motion_id_514><motion_id_514>"
    "<motion_id_9><motion_id_513> for 3 seconds",
    "<motion_id_1><motion_id_2>",
    "someone waves <extra_id_0> twice <extra_id_1>.",
    "",
]


def test_layout(vocab):
  assert vocab.sentencepiece_size == SP_SIZE
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id, vocab.bos_id) == (0, 1, 2, None)
  text = vocab.text_vocabulary
  assert text.encode("<extra_id_0>")[-1] == SP_SIZE + 99 == vocab.sentinel_id(0)
  assert text.encode("<extra_id_99>")[-1] == SP_SIZE == vocab.sentinel_id(99)
  assert text.vocab_size == vocab.motion_offset == SP_SIZE + 100
  assert vocab.motion_id(0) == SP_SIZE + 100 and vocab.encode("<motion_id_0>") == [SP_SIZE + 100]
  assert (vocab.som_id, vocab.eom_id, vocab.mask_id) == tuple(SP_SIZE + 100 + k
                                                             for k in (512, 513, 514))
  assert vocab.num_motion_codes == 512 and vocab.num_motion_tokens == 515
  assert vocab.vocab_size == SP_SIZE + 100 + 515 and vocab.extra_ids == 0
  with pytest.raises(VocabularyError, match="motion token 515"):
    vocab.motion_id(515)


@pytest.mark.parametrize("text", STRINGS)
def test_python_and_tf_agree_and_round_trip(vocab, text):
  ids = vocab.encode(text)
  assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids
  assert vocab.decode(ids) == text
  assert vocab.decode_tf(tf.constant(ids, tf.int32)).numpy().decode() == text
  motion_ids = [i for i in ids if i >= vocab.motion_offset]
  assert motion_ids == [vocab.motion_offset + int(k) for k in
                        re.findall(r"<motion_id_(\d+)>", text)]


def test_the_sentencepiece_only_core_is_the_vocabulary(models, vocab):
  """What the bundle loads (no TensorFlow) encodes and decodes as the seqio vocabulary."""
  from mgpt_jax.lm.vocab_core import VocabularyCore
  core = VocabularyCore(models["main"])
  assert core.sp_model == vocab.text_vocabulary.sp_model  # sentinels laid out as seqio's
  assert (core.vocab_size, core.som_id, core.sentinel_id(3)) == (
      vocab.vocab_size, vocab.som_id, vocab.sentinel_id(3))
  for text in STRINGS:
    ids = core.encode(text)
    assert ids == list(vocab.encode(text)) == list(vocab.encode_tf(text).numpy())
    assert core.decode(ids + [1, 5]) == vocab.decode(ids + [1, 5])
  assert pickle.loads(pickle.dumps(core)).encode(STRINGS[5]) == core.encode(STRINGS[5])


def test_motion_ids_follow_the_text_ids(vocab):
  ids = vocab.encode("Generate text: <motion_id_512><motion_id_7><motion_id_513>")
  assert ids[:-3] == vocab.text_vocabulary.encode("Generate text:")
  assert ids[-3:] == [vocab.som_id, vocab.motion_id(7), vocab.eom_id]
  # Only exact token spellings are motion ids (as with HF added tokens).
  assert all(i < vocab.motion_offset for i in vocab.encode("a <motion_id_515> <motion_id_07>"))


def test_tf_inside_dataset_map_and_batch_decode(vocab):
  texts = STRINGS[:4]
  ds = tf.data.Dataset.from_tensor_slices(texts).map(vocab.encode_tf)
  encoded = [x.tolist() for x in ds.as_numpy_iterator()]
  assert encoded == [vocab.encode(t) for t in texts]
  width = max(map(len, encoded)) + 2
  # Row 0 carries an EOS then junk: like seqio, decoding stops at the first EOS.
  rows = [ids + [vocab.eos_id] + [0] * (width - len(ids) - 1) for ids in encoded]
  rows[0][len(encoded[0]) + 1:] = [vocab.motion_id(3)] * (width - len(encoded[0]) - 1)
  decoded = vocab.decode_tf(tf.constant(rows, tf.int32)).numpy()
  assert [s.decode() for s in decoded] == texts == [vocab.decode(r) for r in rows]
  assert vocab.decode_tf(tf.zeros([2, 0], tf.int32)).numpy().tolist() == [b"", b""]


def test_equality_cache_copy_and_pickle(models, vocab):
  same = MotionVocabulary(models["main"])
  assert same == vocab and hash(same) == hash(vocab)
  assert MotionVocabulary(models["other"]) != vocab
  assert MotionVocabulary(models["main"], num_motion_tokens=300) != vocab
  assert vocab != vocab.text_vocabulary
  cached = vocab_lib.get_vocabulary(models["main"])
  assert cached is vocab_lib.get_vocabulary(models["main"]) == vocab
  # gin calls with keywords; the cache must not tell the spellings apart.
  assert cached is vocab_lib.get_vocabulary(sentencepiece_model=models["main"],
                                            num_motion_tokens=515)
  for clone in (copy.deepcopy(vocab), pickle.loads(pickle.dumps(vocab))):
    assert clone == vocab and clone.vocab_size == vocab.vocab_size
    assert clone.encode(STRINGS[1]) == vocab.encode(STRINGS[1])


def test_bad_inputs(vocab, tmp_path):
  missing = str(tmp_path / "nope.model")
  with pytest.raises(VocabularyError, match="nope.model: SentencePiece model not found"):
    MotionVocabulary(missing)
  junk = tmp_path / "junk.model"
  junk.write_bytes(b"not a model")
  with pytest.raises(VocabularyError, match="junk.model: not a readable SentencePiece model"):
    MotionVocabulary(str(junk))
  with pytest.raises(VocabularyError, match=f"id {vocab.vocab_size} is out of range"):
    vocab.decode([5, vocab.vocab_size])
  with pytest.raises(VocabularyError, match="id -1 is out of range"):
    vocab.decode([-1])


def test_non_t5_layout_is_refused(tmp_path):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "bos.model")
  spm.SentencePieceTrainer.train(sentence_iterator=iter(motion_sentences(100)),
                                 model_prefix=path[:-6], vocab_size=60, minloglevel=2)
  with pytest.raises(VocabularyError, match="bos.model: special ids .* expected T5's"):
    MotionVocabulary(path)


def test_seqio_task_tokenizes_with_it(vocab):
  import seqio  # pylint: disable=g-import-not-at-top
  examples = {"inputs": [STRINGS[1], "a person walks forward slowly."],
              "targets": ["the man jumps", STRINGS[4]]}
  source = seqio.FunctionDataSource(
      lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(examples),
      splits=["train"])
  features = {"inputs": seqio.Feature(vocab), "targets": seqio.Feature(vocab)}
  task = seqio.Task("test_vocab_motion_task", source, output_features=features,
                    preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos])
  dataset = task.get_dataset({"inputs": 64, "targets": 64}, split="train", shuffle=False)
  for i, example in enumerate(dataset.as_numpy_iterator()):
    for key in ("inputs", "targets"):
      assert example[key].tolist() == vocab.encode(examples[key][i]) + [vocab.eos_id]
      assert vocab.decode(example[key]) == examples[key][i]


# ----------------------------------------------------------------------------- motion spans


def test_codes_ids_round_trip(vocab):
  codes = np.array([3, 7, 0, 511])
  ids = motion_span.codes_to_ids(codes, vocab)
  assert ids.tolist() == [vocab.som_id] + [vocab.motion_id(c) for c in codes] + [vocab.eom_id]
  assert motion_span.codes_to_ids(codes, vocab.motion_offset).tolist() == ids.tolist()
  assert motion_span.ids_to_codes(ids, vocab).tolist() == codes.tolist()
  text = motion_span.codes_to_string([3, 7])
  assert text == "<motion_id_512><motion_id_3><motion_id_7><motion_id_513>"
  assert motion_span.string_to_codes(text).tolist() == [3, 7]
  assert vocab.decode(motion_span.codes_to_ids([3, 7], vocab)) == text
  with pytest.raises(ValueError, match="motion code 512 at index 1 is out of range"):
    motion_span.codes_to_ids([1, 512], vocab)


def test_generated_ids_parse_like_the_reference(vocab):
  som, eom, mask, m = vocab.som_id, vocab.eom_id, vocab.mask_id, vocab.motion_id
  parse = lambda ids, **kw: motion_span.ids_to_codes(ids, vocab, **kw).tolist()
  assert parse([5, som, m(4), m(9), eom, 1]) == [4, 9]
  assert parse([5, m(4), m(9), eom, 1]) == [0]  # no start
  assert parse([som, m(4), m(9), 1, 0]) == [0]  # no end
  assert parse([som, eom, m(4)]) == [0]  # empty span
  assert parse([som, 7, m(4), som, mask, vocab.vocab_size + 3, m(9), eom, m(8), eom]) == [4, 9]
  assert parse([som, 7, mask, eom]) == [0]  # nothing left after dropping
  assert parse([som, m(4), m(9), 1, m(6)], strict_span=False) == [4, 9]  # up to EOS
  assert parse([som, m(4), m(9)], strict_span=False) == [4, 9]  # up to the end
  assert parse([m(4), m(9)], strict_span=False) == [0]


def test_generated_strings_parse_like_the_reference():
  parse = lambda text, **kw: motion_span.string_to_codes(text, **kw).tolist()
  assert parse("x <motion_id_512><motion_id_3><motion_id_7><motion_id_513> y") == [3, 7]
  assert parse("<motion_id_3><motion_id_513>") == [0]
  assert parse("<motion_id_512><motion_id_3>") == [0]
  assert parse("<motion_id_512><motion_id_3>", strict_span=False) == [3]
  assert parse("<motion_id_512><motion_id_513>") == [0]
  assert parse("<motion_id_512><motion_id_5> a <motion_id_514><motion_id_600><motion_id_513>"
               ) == [5, 511]


# ----------------------------------------------------------------------------- HF parity


def test_transformers_t5_tokenizer_parity(models, vocab, tmp_path):
  transformers = pytest.importorskip("transformers")
  # transformers 5 ignores T5Tokenizer(vocab_file=...) (it builds a stub vocabulary); loading a
  # checkpoint directory's spiece.model is how MotionGPT builds its tokenizer anyway.
  (tmp_path / "spiece.model").write_bytes(open(models["main"], "rb").read())
  try:
    tokenizer = transformers.T5Tokenizer.from_pretrained(str(tmp_path), extra_ids=100,
                                                         legacy=True)
  except (OSError, ImportError, ValueError) as e:
    pytest.skip(f"transformers cannot build a T5 tokenizer offline here: {e}")
  assert len(tokenizer) == vocab.motion_offset
  assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == vocab.sentinel_id(0)
  assert tokenizer.convert_tokens_to_ids("<extra_id_99>") == vocab.sentinel_id(99)
  tokenizer.add_tokens([f"<motion_id_{k}>" for k in range(515)])
  assert len(tokenizer) == vocab.vocab_size
  for k in (0, 7, 511, 512, 513, 514):
    assert tokenizer.convert_tokens_to_ids(f"<motion_id_{k}>") == vocab.motion_id(k)
  for text in STRINGS:
    hf_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if "<extra_id_" in text:
      # seqio's sentinels are SentencePiece pieces "▁<extra_id_k>"; HF splits them out first, so
      # the text right after one can differ by a "▁" piece. Span corruption builds ids, not
      # strings, so only the sentinel ids themselves must agree.
      sentinels = [i for i in vocab.encode(text)
                   if vocab.sentinel_id(99) <= i <= vocab.sentinel_id(0)]
      assert [i for i in hf_ids if i in sentinels] == sentinels
    else:
      assert hf_ids == vocab.encode(text), text


# ----------------------------------------------------------------------------- training


def test_training_tool_and_its_errors(tmp_path, capsys):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "train_sentencepiece", os.path.join(_TOOLS, "train_sentencepiece.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  texts = tmp_path / "data" / "texts"
  texts.mkdir(parents=True)
  for i, sentence in enumerate(motion_sentences(300, seed=1)):
    (texts / f"{i:06d}.txt").write_text(f"{sentence}#a/DET#0.0#0.0\n")
  (texts / "bad.txt").write_bytes(b"\xff\xfe broken")
  out = str(tmp_path / "tool.model")
  assert tool.main([str(tmp_path / "data"), out, "--vocab-size", "120"]) == 0
  captured = capsys.readouterr()
  assert "bad.txt" in captured.err and "300 captions (1 caption files skipped)" in captured.out
  assert MotionVocabulary(out).sentencepiece_size == 120
  again = train_sentencepiece(motion_sentences(300, seed=1), str(tmp_path / "again.model"), 120)
  assert open(again, "rb").read() == open(out, "rb").read()  # deterministic
  assert tool.main([str(tmp_path / "data"), out, "--vocab-size", "50000"]) == 1
  assert "use vocab_size" in capsys.readouterr().err
  with pytest.raises(SentencePieceTrainingError, match="no non-empty text"):
    train_sentencepiece(["", "  "], str(tmp_path / "empty.model"))
