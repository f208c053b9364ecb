"""Trains a T5-layout SentencePiece model on the captions of a HumanML3D-layout dataset.

    python tools/train_sentencepiece.py DATA_DIR OUT.model --vocab-size 2000 [--split train]

Reads every DATA_DIR/texts/*.txt (or only the ids of --split), skips unreadable caption files
and says which. Only for offline/from-scratch work: with the real T5 vocabulary (any Flan-T5
checkpoint's spiece.model) pass that file to the vocabulary instead; see
mgpt_jax/lm/sentencepiece_model.py.
"""
from __future__ import annotations

import argparse
import sys

from mgpt_jax.data import formats
from mgpt_jax.lm import sentencepiece_model


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("data_dir", help="dataset root holding texts/<id>.txt")
  parser.add_argument("out", help="the .model file to write")
  parser.add_argument("--vocab-size", type=int, default=2000,
                      help="pieces including pad/eos/unk (sentinels and motion ids come on top)")
  parser.add_argument("--split", default=None,
                      help="only the captions of this split's ids (default: every caption file)")
  parser.add_argument("--character-coverage", type=float, default=1.0)
  args = parser.parse_args(argv)
  try:
    texts, skipped = formats.dataset_captions(args.data_dir, args.split)
  except formats.MotionDataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for path, reason in skipped[:10]:
    print(f"skipped {reason}", file=sys.stderr)
  if len(skipped) > 10:
    print(f"... and {len(skipped) - 10} more unreadable caption files", file=sys.stderr)
  try:
    sentencepiece_model.train_sentencepiece(texts, args.out, vocab_size=args.vocab_size,
                                            character_coverage=args.character_coverage)
  except sentencepiece_model.SentencePieceTrainingError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {args.out}: {args.vocab_size} pieces from {len(texts)} captions "
        f"({len(skipped)} caption files skipped)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
