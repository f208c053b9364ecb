"""The seqio tasks of stages 2-3: registration and mixture rates, template banks, placeholder
filling, examples of real tasks, span corruption, sharding and data errors; on a small synthetic
dataset with random stand-in motion tokens and a SentencePiece model trained on its captions."""
import json
import os
import re
import types

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf

import tasks  # noqa: F401  (registration)
from mgpt_jax.data import formats
from mgpt_jax.data.synthetic import write_dataset
from mgpt_jax.data.synthetic.stand_in_tokens import write_stand_in_tokens
from tasks import preprocessors, registry, sources, span_corruption, templates, vocabulary
from tasks.sources import MotionTokenSource

DATASETS = ("humanml3d", "kit_ml", "synthetic")
SEQUENCE_LENGTH = {"inputs": 128, "targets": 128}
LONG = {"inputs": 1024, "targets": 1024}  # never trims: for exact reconstructions
NUM_CODES = 128  # the stand-in tokens' codes are below this (the vocabulary has 512)
SPLITS = {"train": "train", "validation": "val", "test": "test"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """The dataset: entries of every split with tokens; one train entry lacks its token file."""
  root = str(tmp_path_factory.mktemp("tasks") / "synthetic")
  write_dataset(root, 40, seed=0, progress=False, workers=1)
  written = write_stand_in_tokens(root, NUM_CODES)
  dataset = formats.MotionDataset(root, "humanml3d")
  codes, captions, ids = {}, {}, {}
  for split, split_file in SPLITS.items():
    ids[split] = set(written[split_file])
    for entry in dataset.entries(split_file).entries:
      codes[entry.name] = written[split_file][entry.name].tolist()
      captions[entry.name] = [c.text for c in entry.captions]
  all_train = set(ids["train"])
  missing = sorted(ids["train"])[0]
  os.remove(os.path.join(root, sources.TOKENS_DIR, missing + ".npy"))
  ids["train"].discard(missing)
  gin.parse_config([
      f"sources.locations.synthetic = '{root}'",
      "vocabulary.settings.sentencepiece_model = @vocabulary.dataset_sentencepiece()",
      f"vocabulary.dataset_sentencepiece.data_dir = '{root}'",
      "vocabulary.dataset_sentencepiece.vocab_size = 300",
  ])
  yield types.SimpleNamespace(root=root, codes=codes, captions=captions, ids=ids,
                              all_train=all_train, missing=missing)
  gin.clear_config()


@pytest.fixture(scope="module")
def vocab(data):
  return vocabulary.resolve()


def examples(name, split="train", seed=0, n=None, sequence_length=SEQUENCE_LENGTH,
             shuffle=True):
  ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length, split=split,
                                                   shuffle=shuffle, seed=seed)
  if n is not None:
    ds = ds.take(n)
  return list(ds.as_numpy_iterator())


def entry_id(example) -> str:
  return example["id"].decode()


def motion_spans(ids, vocab):
  """The codes of every <som> ... <eom> span in an id sequence."""
  spans, current = [], None
  for i in ids:
    if i == vocab.som_id:
      current = []
    elif i == vocab.eom_id:
      spans.append(current)
      current = None
    elif current is not None:
      current.append(int(i) - vocab.motion_offset)
  return spans


def motion_string(codes, num_codes=512):
  inner = "".join(f"<motion_id_{c}>" for c in codes)
  return f"<motion_id_{num_codes}>{inner}<motion_id_{num_codes + 1}>"


# ------------------------------------------------------------------------- registration


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_registers_its_tasks_and_mixtures(dataset):
  tasks_ = ["t2m", "m2t", "pred", "inbetween", "text_span", "motion_span",
            *(f"instruct_{slug}" for slug, _, _ in templates.INSTRUCT_SUBTASKS),
            *(f"eval_{name}" for name in ("t2m", "m2t", "pred", "inbetween"))]
  assert len(tasks_) == len(set(tasks_)) == 4 + 2 + 18 + 4
  registered = set(seqio.TaskRegistry.names())
  assert {f"mgpt_{dataset}_{t}" for t in tasks_} <= registered
  mixtures = set(seqio.MixtureRegistry.names())
  assert {f"mgpt_{dataset}_pretrain", f"mgpt_{dataset}_instruct"} <= mixtures


def test_instruct_mixture_has_the_18_subtasks_at_equal_rates():
  mixture = seqio.get_mixture_or_task("mgpt_synthetic_instruct")
  names = sorted(t.name for t in mixture.tasks)
  assert names == sorted(f"mgpt_synthetic_instruct_{slug}"
                         for slug, _, _ in templates.INSTRUCT_SUBTASKS)
  assert len(names) == 18
  assert {mixture.get_rate(t) for t in mixture.tasks} == {1.0}


def pretrain_rates():
  mixture = seqio.get_mixture_or_task("mgpt_synthetic_pretrain")
  return {t.name[len("mgpt_synthetic_"):]: mixture.get_rate(t) for t in mixture.tasks}


def test_pretrain_rates_default_to_the_reference_mix():
  assert pretrain_rates() == pytest.approx({"t2m": 0.15, "m2t": 0.15, "pred": 0.15,
                                            "inbetween": 0.15, "text_span": 0.2,
                                            "motion_span": 0.2})


def test_pretrain_rates_follow_gin(data):
  gin.bind_parameter("more_text/registry.pretrain_rates.text_span", 0.5)
  gin.bind_parameter("no_inbetween/registry.pretrain_rates.inbetween", False)
  with gin.config_scope("more_text"):
    rates = pretrain_rates()
  assert rates["text_span"] == pytest.approx(0.5)
  assert rates["motion_span"] == pytest.approx(0.2)
  with gin.config_scope("no_inbetween"):
    rates = pretrain_rates()
  assert rates["inbetween"] == 0.0
  assert rates["t2m"] == pytest.approx(0.2)
  assert pretrain_rates()["text_span"] == pytest.approx(0.2)  # outside the scopes


# ------------------------------------------------------------------------- templates


def test_our_instruct_bank_has_every_subtask():
  bank = templates.load_bank(templates.OUR_INSTRUCT)
  assert len(templates.INSTRUCT_SUBTASKS) == 18
  for _, task, name in templates.INSTRUCT_SUBTASKS:
    subtask = bank.get(name, task)
    assert len(subtask.inputs) >= 12, (task, name)
    assert subtask.outputs


def test_our_pretrain_bank_has_the_supervised_subtasks():
  bank = templates.load_bank(templates.OUR_PRETRAIN)
  for name in registry.SUPERVISED:
    assert bank.get(name).inputs


def test_official_instruct_bank_loads_with_its_quirks_fixed(shared_data):
  path = os.path.join(shared_data, "templates", "template_instructions.json")
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  bank = templates.load_bank(path)
  assert len(bank.subtasks) == 18
  for _, task, name in templates.INSTRUCT_SUBTASKS:
    bank.get(name, task)
  every = [t for s in bank.subtasks for t in s.inputs + s.outputs]
  assert not any("Framelen" in t for t in every)
  assert all(t.strip() for t in every)
  # The raw T2M framelen prompts name <Framelen_Placeholder>: they now carry the frame count.
  framelen = bank.get("framelen", "Text-to-Motion")
  raw_framelen = raw["Text-to-Motion"]["framelen"]["input"]
  assert any("<Framelen_Placeholder>" in t for t in raw_framelen)
  assert len(framelen.inputs) == len(raw_framelen)
  assert sum(templates.FRAMES in t for t in framelen.inputs) >= sum(
      "<Framelen_Placeholder>" in t for t in raw_framelen)
  # ... and framelen-to-caption has one empty template, dropped.
  raw_inputs = raw["Text-to-Text"]["framelen-to-caption"]["input"]
  assert len(bank.get("framelen-to-caption").inputs) == len(raw_inputs) - 1


def test_official_pretrain_bank_loads(shared_data):
  bank = templates.load_bank(os.path.join(shared_data, "templates", "template_pretrain.json"))
  assert {s.name for s in bank.subtasks} == {"t2m", "m2t", "pred"}
  assert bank.get("pred").placeholders == {templates.PREDICTION_PREFIX,
                                           templates.PREDICTION_TARGET}


def good_bank(input_template="Show <Caption_Placeholder>"):
  return {"Text-to-Motion": {"caption": {"class": "t2m", "input": [input_template],
                                         "output": ["<Motion_Placeholder>"]}}}


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    (json.dumps(["a list"]), "expected a JSON object"),
    (json.dumps({"Text-to-Motion": {"caption": {"input": ["x"]}}}), "'input' and 'output'"),
    (json.dumps(good_bank("Show <Foo_Placeholder>")), "<Foo_Placeholder>"),
])
def test_bad_template_files_raise_naming_the_file(tmp_path, content, message):
  path = str(tmp_path / "bank.json")
  if content is not None:
    with open(path, "w", encoding="utf-8") as f:
      f.write(content)
  with pytest.raises(templates.TemplateError, match=re.escape(message)) as error:
    templates.load_bank(path)
  assert path in str(error.value)


def test_a_good_template_file_loads(tmp_path):
  path = str(tmp_path / "bank.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(good_bank(), f)
  assert templates.load_bank(path).get("caption").inputs == ("Show <Caption_Placeholder>",)


# ------------------------------------------------------------------------- placeholders


def source_example(codes, num_frames, fps=20.0):
  return {"codes": tf.constant(codes, tf.int32), "num_frames": tf.constant(num_frames, tf.int32),
          "fps": tf.constant(fps, tf.float32)}


def values_of(codes, caption="a man walks", num_frames=None):
  num_frames = 4 * len(codes) if num_frames is None else num_frames
  values = preprocessors.placeholder_values(source_example(codes, num_frames),
                                            tf.constant(caption), 512)
  return {k: v.numpy().decode() for k, v in values.items()}


def test_placeholder_values_of_a_known_example():
  codes = list(range(100, 110))  # L = 10, 40 frames at 20 fps
  values = values_of(codes)
  assert values[templates.MOTION] == motion_string(codes)
  assert values[templates.PREDICTION_PREFIX] == motion_string(codes[:2])
  assert values[templates.PREDICTION_TARGET] == motion_string(codes[2:])
  masked = codes[:2] + [514] * 5 + codes[7:]
  assert len(masked) == len(codes)
  assert values[templates.MASKED_MOTION] == motion_string(masked)
  assert values[templates.SECONDS] == "2.0"
  assert values[templates.FRAMES] == "40"
  assert values[templates.CAPTION] == "a man walks"


def test_fill_keeps_a_caption_literal():
  caption = r"a man \ jumps $1 \1 then \\ sits"
  values = preprocessors.placeholder_values(source_example(list(range(8)), 32),
                                            tf.constant(caption), 512)
  template = tf.constant("Show <Caption_Placeholder> in <Second_Placeholder> s: "
                         "<Motion_Placeholder_s1>")
  filled = preprocessors.fill(template, values).numpy().decode()
  assert filled == f"Show {caption} in 1.6 s: {motion_string([0])}"


@pytest.mark.parametrize("length", range(1, 61))
def test_split_points_are_the_references(length):
  codes = list(range(1, length + 1))
  values = values_of(codes)
  prefix = re.findall(r"<motion_id_(\d+)>", values[templates.PREDICTION_PREFIX])[1:-1]
  assert len(prefix) == int(length * 0.2 + 1) - 1
  masked = [int(c) for c in re.findall(r"<motion_id_(\d+)>",
                                       values[templates.MASKED_MOTION])[1:-1]]
  head, tail = int(length * 0.25 + 1) - 1, int(length * 0.75 + 1) - 1
  assert masked == codes[:head] + [514] * (tail - head) + codes[tail:]


# ------------------------------------------------------------------------- examples


def test_t2m_targets_are_the_entrys_motion(data, vocab):
  for example in examples("mgpt_synthetic_t2m", n=8):
    codes = data.codes[entry_id(example)]
    assert vocab.decode(example["targets"]) == motion_string(codes)
    assert example["inputs"][-1] == example["targets"][-1] == 1


def test_prediction_splits_the_entrys_motion(data, vocab):
  for example in examples("mgpt_synthetic_pred", n=8):
    codes = data.codes[entry_id(example)]
    (prefix,) = motion_spans(example["inputs"], vocab)
    (target,) = motion_spans(example["targets"], vocab)
    assert prefix and target
    assert prefix + target == codes
    assert example["inputs"][-1] == example["targets"][-1] == 1


def test_inbetween_masks_the_middle_of_the_entrys_motion(data, vocab):
  for example in examples("mgpt_synthetic_inbetween", n=8):
    codes = data.codes[entry_id(example)]
    (masked,) = motion_spans(example["inputs"], vocab)
    assert len(masked) == len(codes)
    assert [m for m, c in zip(masked, codes) if m != 514] == [
        c for m, c in zip(masked, codes) if m != 514]
    assert 514 in masked
    assert motion_spans(example["targets"], vocab) == [codes]


def test_examples_are_deterministic_by_seed(data):
  def summary(seed):
    return [(e["id"], e["inputs"].tolist(), e["targets"].tolist())
            for e in examples("mgpt_synthetic_instruct_t2m_caption", seed=seed, n=6)]

  first = summary(3)
  assert summary(3) == first
  assert summary(4) != first


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_splits_read_their_ids(data, split):
  found = [entry_id(e) for e in examples("mgpt_synthetic_m2t", split=split)]
  assert len(found) == len(set(found))
  assert set(found) == data.ids[split]


# ------------------------------------------------------------------------- span corruption


def uncorrupt(inputs, targets, vocab):
  """The original ids: every sentinel of the inputs replaced by its span of the targets."""
  sentinels = [vocab.sentinel_id(k) for k in range(100)]
  inputs, targets = list(inputs[:-1]), list(targets[:-1])  # without EOS
  used = [i for i in inputs if i in sentinels]
  assert used == sentinels[:len(used)]
  assert [i for i in targets if i in sentinels] == used
  assert targets[0] == sentinels[0]
  spans, k = {}, -1
  for i in targets:
    if i in sentinels:
      k = sentinels.index(i)
      spans[k] = []
    else:
      spans[k].append(i)
  original = []
  for i in inputs:
    original += spans[sentinels.index(i)] if i in sentinels else [i]
  return original, sum(len(s) for s in spans.values())


@pytest.fixture(scope="module")
def motion_span_examples(data):
  return examples("mgpt_synthetic_motion_span", n=40, sequence_length=LONG)


def test_motion_span_corruption_round_trips(data, vocab, motion_span_examples):
  sentinels = {vocab.sentinel_id(k) for k in range(100)}
  motion = range(vocab.motion_offset, vocab.vocab_size)
  assert not sentinels & set(motion)
  for example in motion_span_examples:
    body = list(example["inputs"][:-1]) + list(example["targets"][:-1])
    assert all(i in sentinels or i in motion for i in body)
    original, _ = uncorrupt(example["inputs"], example["targets"], vocab)
    codes = data.codes[entry_id(example)]
    assert original == [vocab.som_id, *(vocab.motion_offset + c for c in codes), vocab.eom_id]


def test_motion_span_noise_is_near_15_percent(data, vocab, motion_span_examples):
  fractions = []
  for example in motion_span_examples:
    original, noise = uncorrupt(example["inputs"], example["targets"], vocab)
    fractions.append(noise / len(original))
  assert 0.08 <= np.mean(fractions) <= 0.25


def test_text_span_corruption_round_trips(data, vocab):
  for example in examples("mgpt_synthetic_text_span", n=20, sequence_length=LONG):
    original, noise = uncorrupt(example["inputs"], example["targets"], vocab)
    assert noise >= 1
    assert all(i < vocab.motion_offset for i in original)
    assert vocab.decode(original) in data.captions[entry_id(example)]


@pytest.mark.parametrize("length", [1, 2, 10, 100])
@pytest.mark.parametrize("seed", [0, 7])
def test_random_spans_noise_mask(length, seed):
  seeds = tf.constant([[seed, 1], [seed, 2]], tf.int32)
  mask = span_corruption.random_spans_noise_mask(tf.constant(length), seeds).numpy()
  assert mask.shape == (length,)
  assert not mask[0]
  if length >= 2:
    assert mask.sum() == min(max(round(0.15 * length), 1), length - 1)
    starts = mask & ~np.pad(mask[:-1], (1, 0))
    assert starts.sum() == max(round(round(0.15 * length) / 3), 1)


# ------------------------------------------------------------------------- sharding and errors


def test_shards_partition_the_split(data):
  source = MotionTokenSource("synthetic", "humanml3d")
  shards = [{i.decode() for i in source.get_dataset(
      "train", shuffle=False, shard_info=seqio.ShardInfo(index, 2)).map(
          lambda x: x["id"]).as_numpy_iterator()} for index in range(2)]
  assert shards[0] and shards[1]
  assert not shards[0] & shards[1]
  assert shards[0] | shards[1] == data.ids["train"]


def test_an_entry_without_tokens_is_skipped(data):
  ids = {i.decode() for i in MotionTokenSource("synthetic", "humanml3d").get_dataset(
      "train", shuffle=False).map(lambda x: x["id"]).as_numpy_iterator()}
  assert data.missing in data.all_train
  assert data.missing not in ids
  assert len(ids) == len(data.all_train) - 1


def test_a_dataset_without_location_names_the_gin_binding(data):
  with pytest.raises(ValueError, match=re.escape("sources.locations.kit_ml")):
    MotionTokenSource("kit_ml", "kit").get_dataset("train")


def test_a_root_without_tokens_says_to_tokenize(data, tmp_path):
  gin.bind_parameter("no_tokens/sources.locations.synthetic", str(tmp_path))
  with gin.config_scope("no_tokens"):
    with pytest.raises(formats.MotionDataError, match="tokenize-dataset"):
      MotionTokenSource("synthetic", "humanml3d").get_dataset("train")


def test_examples_carry_every_caption_as_references(data):
  """The caption metrics score against all captions of the motion (tasks/metrics.py)."""
  from tasks import metrics
  found = examples("mgpt_synthetic_eval_m2t", "validation", shuffle=False)
  assert found
  for ex in found:
    references = metrics.caption_references(ex["targets_pretokenized"].decode(), ex, True)
    assert references == data.captions[entry_id(ex)]
    assert ex["targets_pretokenized"].decode() in references
