"""mgpt_jax: MotionGPT (human motion as a foreign language) on JAX/Flax, T5X and seqio."""

__version__ = "0.1.0"
