"""Stage 1: the motion tokenizer (VQ-VAE). Imports only jax, flax and numpy."""
