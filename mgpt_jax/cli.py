"""The `mgpt` command. Thin: it parses arguments and calls into the rooms."""
from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from mgpt_jax import console, errors
from mgpt_jax.cli_bundle import (cmd_batch, cmd_caption, cmd_complete, cmd_demo, cmd_export,
                                 cmd_generate)

DATASETS = ("humanml3d", "kit")


def _progress(description: str):
  return lambda items: tqdm(items, desc=description, unit="clip", file=sys.stderr)


def cmd_synth(args) -> int:
  from mgpt_jax.data.synthetic import write_dataset  # pylint: disable=g-import-not-at-top
  report = write_dataset(args.out, args.num_motions, args.seed, dataset=args.dataset,
                         workers=args.workers, overwrite=args.overwrite)
  print(f"wrote {report.num_motions} {report.dataset} motions ({report.num_frames} frames) to "
        f"{report.out_dir} in {report.seconds:.1f} s")
  return 0


def cmd_validate(args) -> int:
  from mgpt_jax.data import validate  # pylint: disable=g-import-not-at-top
  report = validate.validate_dataset(args.dir, args.dataset, progress=_progress("validate"))
  print(validate.format_report(report))
  return 0 if report.ok else 1


def cmd_to_features(args) -> int:
  from mgpt_jax.data import convert  # pylint: disable=g-import-not-at-top
  features = convert.joints_file_to_features(args.joints, args.out, args.dataset,
                                             official=args.official,
                                             reference_joints=args.reference_joints)
  print(f"wrote features {features.shape} to {args.out}")
  return 0


def cmd_to_joints(args) -> int:
  from mgpt_jax.data import convert  # pylint: disable=g-import-not-at-top
  joints = convert.features_file_to_joints(args.features, args.out, args.dataset,
                                           stats_dir=args.stats, stats_kind=args.stats_kind)
  print(f"wrote joints {joints.shape} to {args.out}")
  return 0


def cmd_from_bvh(args) -> int:
  from mgpt_jax.data import bvh_import  # pylint: disable=g-import-not-at-top
  options = {"unit": args.unit, "up": args.up,
             "joint_map": bvh_import.read_joint_map(args.joint_map) if args.joint_map else None}
  if os.path.isdir(args.src):
    report = bvh_import.convert_directory(args.src, args.out, overwrite=args.overwrite,
                                          progress=_progress("from-bvh"), **options)
    print(report.summary())
    return 0
  if not args.out.lower().endswith(".npy"):
    raise ValueError(f"OUT {args.out!r}: expected a .npy path for a single BVH file")
  if os.path.exists(args.out) and not args.overwrite:
    raise FileExistsError(f"{args.out}: already exists; pass --overwrite to replace it")
  array, clip = bvh_import.bvh_file_to_npy(args.src, args.out, as_joints=args.joints, **options)
  print(f"read {args.src}: {clip.summary()}")
  print(f"wrote {'joints' if args.joints else 'features'} {array.shape} to {args.out}")
  return 0


def cmd_build_tfds(args) -> int:
  from mgpt_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  builder = tfds_builder.build(args.dir, dataset=args.config, tfds_data_dir=args.out)
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} examples")
  print(f"tfds dataset written to {builder.data_dir}")
  return 0


def cmd_tokenize_dataset(args) -> int:
  from mgpt_jax.inference.tokenize_dataset import tokenize_dataset  # pylint: disable=g-import-not-at-top
  report = tokenize_dataset(args.model_dir, args.data, args.out, splits=args.splits.split(","))
  print(report.summary())
  for skip in report.skipped:
    print(f"  skipped {skip}")
  return 0


def cmd_import_hf(args) -> int:
  from mgpt_jax.inference import lm_checkpoint  # pylint: disable=g-import-not-at-top
  if args.format == "t5x":
    from mgpt_jax.interop import t5x_checkpoint  # pylint: disable=g-import-not-at-top
    from mgpt_jax.lm.config import SIZES  # pylint: disable=g-import-not-at-top
    config, params = lm_checkpoint.motion_lm_from_hf(args.hf_dir, args.vocab_size, args.seed)
    path = t5x_checkpoint.write_t5x_checkpoint(args.out_dir, params, overwrite=args.overwrite)
    # gin builds the model from LM_SIZE and the vocabulary: name the size these weights have.
    sizes = [name for name, size in SIZES.items()
             if size.replace(vocab_size=config.vocab_size, dropout_rate=config.dropout_rate)
             == config]
    model_file = f"gin/models/t5_{sizes[0]}.gin" if sizes else "a model file of these dimensions"
    print(f"wrote a T5X checkpoint of a T5 of {config.emb_dim} x {config.num_encoder_layers}/"
          f"{config.num_decoder_layers} layers with {config.vocab_size} vocabulary rows to {path}\n"
          f"start stage 2 from it: python -m t5x.train --gin_file=gin/pretrain.gin "
          f"--gin_file={model_file} --gin.INITIAL_CHECKPOINT_PATH=\\\"{path}\\\" ...")
    return 0
  config, _ = lm_checkpoint.import_hf(args.hf_dir, args.out_dir, args.vocab_size, args.seed,
                                      overwrite=args.overwrite)
  print(f"imported a T5 of {config.emb_dim} x {config.num_encoder_layers}/"
        f"{config.num_decoder_layers} layers with {config.vocab_size} vocabulary rows to "
        f"{args.out_dir}")
  return 0


def cmd_export_hf(args) -> int:
  from mgpt_jax.inference import lm_checkpoint  # pylint: disable=g-import-not-at-top
  lm_checkpoint.export_hf(args.lm_dir, args.hf_dir)
  print(f"wrote a transformers T5ForConditionalGeneration to {args.hf_dir}")
  return 0


def cmd_import_official(args) -> int:
  from mgpt_jax.interop import motiongpt  # pylint: disable=g-import-not-at-top
  report = motiongpt.import_release(args.checkpoint, args.stats_dir, args.out, args.t5_dir,
                                    bundle_dir=args.bundle, vq_only=args.vq_only,
                                    overwrite=args.overwrite)
  print(report.summary())
  return 0


def cmd_export_official(args) -> int:
  from mgpt_jax.interop import motiongpt  # pylint: disable=g-import-not-at-top
  out = motiongpt.export_release(args.tokenizer_dir, args.lm_dir, args.out,
                                 vocabulary_dir=args.vocabulary_dir, overwrite=args.overwrite)
  print(f"wrote the official layout to {out}: {motiongpt.CHECKPOINT_NAME}, t5/, meta/, "
        "vq.yaml, lm.yaml")
  return 0


def cmd_plan(args) -> int:
  from mgpt_jax.training import planner  # pylint: disable=g-import-not-at-top
  return planner.main(args.flags)


def cmd_quickstart(args) -> int:
  from mgpt_jax import quickstart  # pylint: disable=g-import-not-at-top
  lm_steps = args.lm_steps
  return quickstart.run(args.out, preset=args.preset, seed=args.seed,
                        num_motions=args.num_motions, tokenizer_steps=args.tokenizer_steps,
                        pretrain_steps=lm_steps, instruct_steps=lm_steps,
                        evaluator_steps=args.evaluator_steps, replications=args.replications,
                        mm_texts=args.mm_texts, mm_repeats=args.mm_repeats,
                        eval_entries=args.eval_entries)


def cmd_eval(args) -> int:
  from mgpt_jax.eval.protocol import bundle_eval, tasks  # pylint: disable=g-import-not-at-top
  out = args.json or f"eval_{args.task}.json"
  if args.task == "semantic":
    from mgpt_jax.eval import semantic_eval  # pylint: disable=g-import-not-at-top
    record = semantic_eval.evaluate_bundle(args.bundle, args.data, args.split, args.seed,
                                           out_json=out, beam=args.beam)
  else:
    settings = tasks.Settings(mm_texts=args.mm_texts, mm_repeats=args.mm_repeats,
                              mm_times=min(10, args.mm_repeats), batch_size=args.batch_size,
                              bert_score_model=args.bert_score_model)
    record = bundle_eval.evaluate_bundle(
        args.bundle, args.data, args.evaluator, args.task, args.replications, args.seed,
        settings, args.split, args.spacy_model, args.max_entries, out_json=out)
  print(record["table"])
  for note in record.get("notes", []):
    print(f"note: {note}")
  print(f"wrote {os.path.abspath(out)}")
  return 0


EVALUATOR_SIZES = {"t2m": {}, "tiny": {"word_dim": 64, "text_hidden": 64, "motion_hidden": 128,
                                      "movement_hidden": 64, "movement_latent": 64,
                                      "embed_dim": 64}}


def cmd_evaluator_train(args) -> int:
  from mgpt_jax.eval.evaluator import train  # pylint: disable=g-import-not-at-top
  settings = train.TrainSettings(steps=args.steps, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, seed=args.seed)
  result = train.train_evaluator(args.data, args.out, args.dataset, EVALUATOR_SIZES[args.size],
                                 settings, logdir=args.out + "_logs")
  print(f"trained the evaluator in {result['seconds']:.0f} s; validation (ground truth): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["validation"].items()))
  print(f"wrote {args.out}")
  return 0


def cmd_evaluator_import(args) -> int:
  from mgpt_jax.eval.evaluator import importer  # pylint: disable=g-import-not-at-top
  out = importer.import_t2m_evaluator(args.checkpoint, args.glove_dir, args.stats_dir, args.out,
                                      dataset=args.dataset, pack_motion=not args.unpacked,
                                      overwrite=args.overwrite)
  print(f"wrote the evaluator {out}")
  return 0


def _motion_outputs(p: argparse.ArgumentParser, required: bool) -> None:
  p.add_argument("--out", required=required,
                 help="features .npy of the motion (numbered when several samples)")
  p.add_argument("--render", default=None, help="a .gif or .mp4 animation (480 px, titled)")
  p.add_argument("--bvh", default=None, help="a .bvh file of the 22-joint skeleton")
  p.add_argument("--as-joints", action="store_true", help="--out holds joints (T, J, 3)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="mgpt", description="MotionGPT on JAX: data, training, "
                                   "inference and evaluation. Errors are one line (exit 2); "
                                   "--verbose anywhere shows their traceback.")
  commands = parser.add_subparsers(dest="command", required=True)

  data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command",
                                                                          required=True)
  p = data.add_parser("synth", help="write the procedural synthetic dataset")
  p.add_argument("out")
  p.add_argument("--num-motions", type=int, default=2000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dataset", choices=DATASETS, default="humanml3d")
  p.add_argument("--workers", type=int, default=None)
  p.add_argument("--overwrite", action="store_true",
                 help="write into a non-empty directory that is not a synthetic dataset")
  p.set_defaults(func=cmd_synth)

  p = data.add_parser("validate", help="check a dataset directory; exit 1 on any error")
  p.add_argument("dir")
  p.add_argument("--dataset", default=None, help="humanml3d or kit (default: from feature width)")
  p.set_defaults(func=cmd_validate)

  p = data.add_parser("to-features", help="joints (T, J, 3) .npy -> features (T-1, D) .npy")
  p.add_argument("joints")
  p.add_argument("out")
  p.add_argument("--dataset", default=None, help="humanml3d or kit (default: from joint count)")
  p.add_argument("--official", action="store_true",
                 help="reproduce the reference's yaw-velocity sign error")
  p.add_argument("--reference-joints", default=None,
                 help="a new_joints clip whose bone lengths define the uniform skeleton")
  p.set_defaults(func=cmd_to_features)

  p = data.add_parser("to-joints", help="features (T, D) .npy -> joints (T, J, 3) .npy")
  p.add_argument("features")
  p.add_argument("out")
  p.add_argument("--dataset", default=None, help="humanml3d or kit (default: from feature width)")
  p.add_argument("--stats", default=None, help="directory of stats: input is normalised")
  p.add_argument("--stats-kind", default="dataset", choices=("dataset", "meta", "eval"))
  p.set_defaults(func=cmd_to_joints)

  p = data.add_parser("from-bvh", help="a BVH of any rig (or a folder of them) -> HumanML3D "
                      "features, joints, or a dataset in the released layout")
  p.add_argument("src", help="a .bvh file, or a directory of them (converted to a dataset)")
  p.add_argument("out", help="a .npy file, or for a directory the dataset directory to write")
  p.add_argument("--joints", action="store_true",
                 help="write joints (T, 22, 3): metres, y up, 20 fps, not yet canonicalised")
  p.add_argument("--joint-map", default=None, help='JSON {"pelvis": "<file joint>", ...}; our '
                 "SMPL joint names or indices 0-21, over the built-in SMPL/Mixamo/CMU tables")
  p.add_argument("--unit", default="auto", choices=("auto", "m", "cm", "mm", "inch"),
                 help="length unit of the file (auto: from the leg length)")
  p.add_argument("--up", default="auto", choices=("auto", "y", "z"),
                 help="up axis of the file (auto: from the feet-to-head direction)")
  p.add_argument("--overwrite", action="store_true")
  p.set_defaults(func=cmd_from_bvh)

  p = data.add_parser("build-tfds", help="build the tensorflow-datasets dataset of a directory")
  p.add_argument("dir")
  p.add_argument("--config", default="synthetic", choices=("synthetic", "humanml3d", "kit_ml"))
  p.add_argument("--out", required=True, help="tfds data_dir")
  p.set_defaults(func=cmd_build_tfds)

  p = commands.add_parser("tokenize-dataset", help="write TOKENS/<id>.npy with a stage-1 model")
  p.add_argument("--model-dir", required=True, help="a stage-1 run directory")
  p.add_argument("--data", required=True, help="dataset root in the HumanML3D/KIT layout")
  p.add_argument("--out", default=None, help="default: DATA/TOKENS")
  p.add_argument("--splits", default="train,val,test")
  p.set_defaults(func=cmd_tokenize_dataset)

  p = commands.add_parser("import-hf", help="transformers T5 checkpoint -> our LM checkpoint")
  p.add_argument("hf_dir")
  p.add_argument("out_dir")
  p.add_argument("--vocab-size", type=int, default=None,
                 help="rows after adding the 515 motion ids (default: T5's 32100 ids + 515, "
                 "rounded up to 128)")
  p.add_argument("--seed", type=int, default=0, help="for the new rows")
  p.add_argument("--format", choices=("mgpt", "t5x"), default="mgpt",
                 help="mgpt: a directory mgpt_jax.load_lm and the built-in runner read; t5x: a "
                 "T5X checkpoint OUT_DIR/checkpoint_0 that t5x.train starts stage 2 from "
                 "(--gin.INITIAL_CHECKPOINT_PATH)")
  p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR (t5x: OUT_DIR/checkpoint_0)")
  p.set_defaults(func=cmd_import_hf)

  p = commands.add_parser("export-hf", help="our LM checkpoint -> a transformers T5 directory")
  p.add_argument("lm_dir")
  p.add_argument("hf_dir")
  p.set_defaults(func=cmd_export_hf)

  p = commands.add_parser(
      "import-official", help="the official MotionGPT release (or T2M-GPT's VQ-VAE) -> "
      "OUT/lm and OUT/tokenizer")
  p.add_argument("checkpoint", help="motiongpt_s3_h3d.tar, or T2M-GPT's net_last.pth with "
                 "--vq-only")
  p.add_argument("--t5-dir", default=None,
                 help="the backbone it was trained from (deps/flan-t5-base): config.json, "
                 "and spiece.model for a vocabulary and --bundle")
  p.add_argument("--stats-dir", required=True,
                 help="the meta mean.npy/std.npy (e.g. VQVAEV3_CB1024_CMT_H1024_NRES3/meta)")
  p.add_argument("--out", required=True)
  p.add_argument("--bundle", default=None, help="also write an inference bundle here")
  p.add_argument("--vq-only", action="store_true", help="import the tokenizer alone")
  p.add_argument("--overwrite", action="store_true")
  p.set_defaults(func=cmd_import_official)

  p = commands.add_parser("export-official",
                          help="our tokenizer + LM in the official MotionGPT layout")
  p.add_argument("--tokenizer-dir", required=True, help="the stage-1 directory")
  p.add_argument("--lm-dir", required=True, help="the LM run (or saved LM) directory")
  p.add_argument("--out", required=True, help="the directory to write")
  p.add_argument("--vocabulary-dir", default=None, help="default: LM_DIR/assets")
  p.add_argument("--overwrite", action="store_true")
  p.set_defaults(func=cmd_export_official)

  # `mgpt train ...` goes straight to mgpt_jax.train (see main); listed here for --help.
  commands.add_parser("train", help="the built-in runner: --gin_file=F --gin.NAME=VALUE ... "
                      "(mgpt train --help)")

  p = commands.add_parser("plan", help="dry run: per-device memory, FLOPs and fit of a gin stage "
                          "on its mesh (simulated devices, no weights); --devices=N --mfu=F ...")
  p.add_argument("flags", nargs=argparse.REMAINDER)
  p.set_defaults(func=cmd_plan)

  p = commands.add_parser("export", help="a self-contained inference bundle of stages 1 and 3")
  p.add_argument("--tokenizer-dir", required=True, help="the stage-1 run directory")
  p.add_argument("--lm-dir", required=True, help="the LM run (or saved LM) directory")
  p.add_argument("--out", required=True, help="the bundle directory to write")
  p.add_argument("--dtype", choices=("float32", "bfloat16", "int8"), default="float32",
                 help="the LM's weights: int8 is weight-only, one scale per channel")
  p.add_argument("--vocabulary-dir", default=None, help="default: LM_DIR/assets")
  p.add_argument("--no-cpu-kernels", dest="cpu_kernels", action="store_false",
                 help="XLA's dots only: a bundle that loads where no C++ compiler is (the CPU "
                      "kernels are compiled at load)")
  p.add_argument("--overwrite", action="store_true")
  p.set_defaults(func=cmd_export)

  p = commands.add_parser("generate", help="text to motion with a bundle")
  p.add_argument("bundle")
  p.add_argument("--text", required=True)
  p.add_argument("--num-samples", type=int, default=1)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--seconds", type=float, default=None,
                 help="a motion of this length, beyond the training crops by chained generation")
  _motion_outputs(p, required=False)
  p.set_defaults(func=cmd_generate)

  p = commands.add_parser("caption", help="motion to text with a bundle")
  p.add_argument("bundle")
  p.add_argument("motion", help="features (T, D) or joints (T, J, 3) .npy, or a .bvh")
  p.set_defaults(func=cmd_caption)

  for name, text in (("predict", "continue the first 20 %% of a motion"),
                     ("inbetween", "fill in the middle half of a motion")):
    p = commands.add_parser(name, help=f"{text} with a bundle")
    p.add_argument("bundle")
    p.add_argument("motion", help="features (T, D) or joints (T, J, 3) .npy, or a .bvh")
    p.add_argument("--seed", type=int, default=0)
    _motion_outputs(p, required=True)
    p.set_defaults(func=cmd_complete)

  p = commands.add_parser("batch", help="answer a prompt file in the official demo formats")
  p.add_argument("bundle")
  p.add_argument("prompts", help="one prompt per line; motion tasks end with #<motion .npy>")
  p.add_argument("--out-dir", required=True, help="motions as <line>.npy, all answers.jsonl")
  p.add_argument("--motion-dir", default=None,
                 help="where to find motions whose path does not exist, by file name")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--render", action="store_true", help="also a GIF per motion answer")
  p.add_argument("--overwrite", action="store_true",
                 help="write into a non-empty OUT_DIR that holds no earlier answers")
  p.set_defaults(func=cmd_batch)

  p = commands.add_parser("demo", help="the web demo (Gradio) of a bundle")
  p.add_argument("bundle")
  p.add_argument("--host", default="127.0.0.1",
                 help="address to bind (default: this machine only; 0.0.0.0 for the network)")
  p.add_argument("--port", type=int, default=7860)
  p.set_defaults(func=cmd_demo)

  p = commands.add_parser("eval", help="the paper's evaluation protocol for a bundle")
  p.add_argument("--bundle", required=True)
  p.add_argument("--data", required=True, help="the dataset directory (its test split is used)")
  p.add_argument("--evaluator", required=True, help="an evaluator directory (mgpt evaluator ...)")
  p.add_argument("--task", required=True,
                 choices=("t2m", "m2t", "pred", "inbetween", "recon", "semantic"))
  p.add_argument("--replications", type=int, default=20)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--split", default="test")
  p.add_argument("--json", default=None, help="default: eval_<task>.json")
  p.add_argument("--max-entries", type=int, default=None, help="an even spread of the split")
  p.add_argument("--mm-texts", type=int, default=100, help="MultiModality texts (0: skip)")
  p.add_argument("--mm-repeats", type=int, default=30, help="MultiModality samples per text")
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--bert-score-model", default=None, help="a local model for BERTScore")
  p.add_argument("--spacy-model", default=None,
                 help="tag generated captions with spaCy (default: the dataset's own lexicon)")
  p.add_argument("--beam", action="store_true",
                 help="semantic: also answer each caption with the bundle's beam search")
  p.set_defaults(func=cmd_eval)

  evaluator = commands.add_parser("evaluator", help="the T2M text-motion matching evaluator")
  evaluator = evaluator.add_subparsers(dest="evaluator_command", required=True)
  p = evaluator.add_parser("train", help="train it with its contrastive objective on a dataset")
  p.add_argument("--data", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--dataset", choices=DATASETS, default="humanml3d")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--learning-rate", type=float, default=1e-4)
  p.add_argument("--size", choices=("t2m", "tiny"), default="t2m",
                 help="t2m: the released sizes; tiny: small GRUs for the synthetic data")
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=cmd_evaluator_train)
  p = evaluator.add_parser("import", help="the official PyTorch evaluator + GloVe, no pickles run")
  p.add_argument("--checkpoint", required=True, help="text_mot_match/model/finest.tar")
  p.add_argument("--glove-dir", required=True, help="with our_vab_{data.npy,words.pkl,idx.pkl}")
  p.add_argument("--stats-dir", required=True, help="with the evaluator's mean.npy / std.npy")
  p.add_argument("--out", required=True)
  p.add_argument("--dataset", choices=DATASETS, default="humanml3d")
  p.add_argument("--unpacked", action="store_true",
                 help="run the motion GRU over the padding, as MotionGPT's code does (§11.5)")
  p.add_argument("--overwrite", action="store_true")
  p.set_defaults(func=cmd_evaluator_import)

  p = commands.add_parser("quickstart", help="the main job on the embedded synthetic default")
  p.add_argument("--out", default="mgpt_quickstart")
  p.add_argument("--preset", default="default", choices=("default", "full"),
                 help="default: about 15 min on 2 CPU cores; full: more data and steps (README)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--num-motions", type=int, help="(the preset's unless given)")
  p.add_argument("--tokenizer-steps", type=int)
  p.add_argument("--lm-steps", type=int, help="steps of stage 2 and of stage 3")
  p.add_argument("--evaluator-steps", type=int)
  p.add_argument("--replications", type=int, help="of the evaluation protocol")
  p.add_argument("--mm-texts", type=int, help="MultiModality texts (0: skip)")
  p.add_argument("--mm-repeats", type=int, help="MultiModality samples per text")
  p.add_argument("--eval-entries", type=int, help="test entries the protocol evaluates")
  p.set_defaults(func=cmd_quickstart)
  return parser


def main(argv=None) -> int:
  argv, verbose = errors.pop_verbose(sys.argv[1:] if argv is None else argv)
  console.quiet(verbose)  # TF's start-up messages only with --verbose
  if argv[:1] == ["train"]:  # T5X-style flags, parsed by the entry point itself
    from mgpt_jax import train  # pylint: disable=g-import-not-at-top
    return train.main(argv[1:] + ([errors.VERBOSE_FLAG] if verbose else []))
  parser = build_parser()
  try:
    # argparse.REMAINDER does not take a leading --flag: give `plan` the flags it left.
    args, unknown = parser.parse_known_args(argv)
    if unknown and not hasattr(args, "flags"):
      parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:
      args.flags = [*unknown, *args.flags]
  except SystemExit as e:  # argparse has printed the usage and its one-line error
    return int(e.code or 0)
  return errors.run(lambda: args.func(args), verbose)


if __name__ == "__main__":
  sys.exit(main())
