"""mgpt_jax: MotionGPT (human motion as a foreign language) on JAX/Flax, T5X and seqio."""

__version__ = "0.1.0"


def load_lm(path: str, step: int | None = None):
  """(module, params) of a saved language model or a language-model run directory.

  The module is a flax T5 with the call signature of t5x's EncoderDecoderModel.
  """
  from mgpt_jax.inference.lm_checkpoint import load_lm as _load  # pylint: disable=g-import-not-at-top
  return _load(path, step)
