"""mgpt_jax: MotionGPT (human motion as a foreign language) on JAX/Flax, T5X and seqio."""

__version__ = "0.1.0"


def load_lm(path: str, step: int | None = None):
  """(module, params) of a saved language model or a language-model run directory.

  The module is a flax T5 with the call signature of t5x's EncoderDecoderModel.
  """
  from mgpt_jax.inference.lm_checkpoint import load_lm as _load  # pylint: disable=g-import-not-at-top
  return _load(path, step)


def load_vq(path: str, step: int | None = None):
  """(module, variables) of a stage-1 tokenizer directory (a training run or an import).

      module, variables = mgpt_jax.load_vq("runs/vq")
      codes = module.apply(variables, normalised_features, method=module.encode)  # (B, T/4)
      features = module.apply(variables, codes, method=module.decode)  # (B, 4L, D), normalised

  Features are normalised with the directory's assets/Mean.npy and Std.npy.
  """
  from mgpt_jax.inference.tokenize_dataset import Tokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = Tokenizer.load(path, step)
  return tokenizer.module, tokenizer.variables
