"""A tensorflow-datasets builder for motion/text data in the HumanML3D / KIT-ML layout.

    builder = build("/data/HumanML3D", "humanml3d", tfds_data_dir="/data/tfds")
    train = builder.as_dataset(split="train")

The data is never downloaded: the builder reads the manual dir through
`formats.MotionDataset`, so it sees exactly the entries (whole clips and
captioned sub-clips, length-filtered) that the numpy loaders see. This is the
only module of mgpt_jax.data that imports tensorflow.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from mgpt_jax.data import formats
from mgpt_jax.data.skeletons import get_skeleton

_NAME = "motion_text"
# tfds split name -> split file stem of the released datasets.
_SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
_MAX_REPORTED_SKIPS = 20

_MANUAL_DOWNLOAD_INSTRUCTIONS = """\
The motion datasets cannot be downloaded automatically (HumanML3D and KIT-ML are
derived from AMASS / KIT data under their own licenses). Prepare them with the
HumanML3D scripts, or generate the synthetic dataset, and pass the dataset root as
the manual dir (`build(root, ...)` does that). The root must contain:

    new_joint_vecs/<id>.npy   float features of shape (T, 263) for HumanML3D and
                              the synthetic set, (T, 251) for KIT-ML
    texts/<id>.txt            one caption per line: caption#word/POS word/POS ...#start#end
                              (start/end in seconds; 0#0 means the whole clip)
    train.txt, val.txt, test.txt   one motion id per line
    Mean.npy, Std.npy         feature statistics (not read by the builder, kept beside the data)
"""


@dataclasses.dataclass(eq=False)
class MotionTextConfig(tfds.core.BuilderConfig):
  dataset: str = "humanml3d"  # the skeleton name formats.MotionDataset reads with

  @property
  def feature_dim(self) -> int:
    return get_skeleton(self.dataset).feature_dim


def _name_taken() -> bool:
  # Importing this module twice (importlib.reload, or once as __main__) would
  # define the class again, and tfds refuses a second registration of a name.
  try:
    existing = tfds.core.registered.imported_builder_cls(_NAME)
  except tfds.core.registered.DatasetNotFoundError:
    return False
  if existing.__name__ != "MotionText":
    logging.warning("tfds dataset name %r is already taken by %s.%s; MotionText is not "
                    "registered (use it through the class or build())", _NAME,
                    existing.__module__, existing.__qualname__)
  return True


class MotionText(tfds.core.GeneratorBasedBuilder, skip_registration=_name_taken()):
  """Motion features with their captions, one example per clip or captioned sub-clip."""
  name = _NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      MotionTextConfig(name="humanml3d", dataset="humanml3d",
                       description="HumanML3D: 263-d features, 22 joints, 20 fps."),
      MotionTextConfig(name="kit_ml", dataset="kit",
                       description="KIT-ML: 251-d features, 21 joints, 12.5 fps."),
      MotionTextConfig(name="synthetic", dataset="humanml3d",
                       description="The procedural dataset, written in the HumanML3D layout."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Text-annotated motion clips in the HumanML3D feature representation. "
                     "Sub-clips that a caption line addresses by start/end time are "
                     "examples of their own."),
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),  # the motion id, or "<id>@<start>-<end>" in frames
            "motion_id": tfds.features.Text(),
            "motion": tfds.features.Tensor(shape=(None, self.builder_config.feature_dim),
                                           dtype=np.float32),
            "length": tfds.features.Scalar(dtype=np.int32),
            # Aligned per caption line; tokens are the line's space-joined word/POS.
            "captions": tfds.features.Sequence(tfds.features.Text()),
            "tokens": tfds.features.Sequence(tfds.features.Text()),
            "start": tfds.features.Sequence(np.float32),
            "end": tfds.features.Sequence(np.float32),
        }),
        homepage="https://github.com/EricGuo5513/HumanML3D",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    dataset = formats.MotionDataset(os.fspath(dl_manager.manual_dir), self.builder_config.dataset)
    # Reading every split up front fails on an empty split before anything is written.
    entry_lists = {split: _read_entries(dataset, stem) for split, stem in _SPLIT_FILES.items()}
    return {split: self._generate_examples(dataset, entries.entries)
            for split, entries in entry_lists.items()}

  def _generate_examples(self, dataset: formats.MotionDataset, entries):
    by_motion = collections.defaultdict(list)
    for entry in entries:
      by_motion[entry.motion_id].append(entry)
    # Grouping loads each feature file once however many sub-clips it has.
    for motion_id, clip_entries in by_motion.items():
      features = dataset.features(motion_id)
      for entry in clip_entries:
        yield entry.name, {
            "id": entry.name,
            "motion_id": motion_id,
            "motion": features[entry.start:entry.end],
            "length": np.int32(entry.length),
            "captions": [c.text for c in entry.captions],
            "tokens": [" ".join(c.tokens) for c in entry.captions],
            "start": np.asarray([c.start for c in entry.captions], np.float32),
            "end": np.asarray([c.end for c in entry.captions], np.float32),
        }


def _read_entries(dataset: formats.MotionDataset, split: str) -> formats.EntryList:
  entries = dataset.entries(split, on_error="skip")
  message = f"{dataset.root} split {split!r}: {entries.summary()}"
  if entries.skipped:
    shown = entries.skipped[:_MAX_REPORTED_SKIPS]
    more = len(entries.skipped) - len(shown)
    message += "; skipped:\n  " + "\n  ".join(map(str, shown))
    message += f"\n  ... and {more} more" if more else ""
    logging.warning(message)
  else:
    logging.info(message)
  if not entries.entries:
    first = f"; first error: {entries.skipped[0]}" if entries.skipped else ""
    raise formats.MotionDataError(
        dataset.root,
        f"split {split!r} ({split}.txt) has no valid entries ({entries.summary()}){first}")
  return entries


_CONFIG_ALIASES = {"kit": "kit_ml", "kit-ml": "kit_ml", "hml3d": "humanml3d"}


def build(data_dir, dataset: str = "synthetic", tfds_data_dir=None,
          overwrite: bool = False, quiet: bool = False) -> MotionText:
  """Prepares the `dataset` config from the dataset root `data_dir`; returns the builder.

  A version already prepared in `tfds_data_dir` is reused unless `overwrite`,
  so pass overwrite=True after changing the source files. `quiet` hides tfds's own
  progress bars (whose first estimate of a small build is hours) and banner.
  """
  config = _CONFIG_ALIASES.get(dataset.lower(), dataset.lower())
  builder = MotionText(config=config,
                       data_dir=None if tfds_data_dir is None else os.fspath(tfds_data_dir))
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  config = tfds.download.DownloadConfig(manual_dir=os.fspath(data_dir), download_mode=mode)
  if not quiet:
    builder.download_and_prepare(download_config=config)
    return builder
  tfds.disable_progress_bar()
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=config)
  finally:
    tfds.enable_progress_bar()
  return builder
