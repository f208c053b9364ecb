"""Where the gin configs are, in a checkout and in an installed package.

The configs live in the repository's top-level gin/; a wheel ships the same files as
mgpt_jax/gin/ (setup.py maps one onto the other, so there is one copy). Two search paths
make both spellings work: the folder holding gin/ resolves 'gin/tokenizer.gin' (the form
the t5x files and their includes use), and gin/ itself resolves 'tokenizer.gin'.

For T5X's trainer, which has its own search-path flag:

  python -m t5x.train --gin_search_paths=$(python -m mgpt_jax.gin_paths) \\
    --gin_file=gin/pretrain.gin ...

(gin always tries the current directory first, so a checkout's own gin/ still wins there.)
"""
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_INSTALLED_GIN_DIR = os.path.join(PACKAGE_DIR, "gin")
_CHECKOUT_GIN_DIR = os.path.join(os.path.dirname(PACKAGE_DIR), "gin")
GIN_DIR = _INSTALLED_GIN_DIR if os.path.isdir(_INSTALLED_GIN_DIR) else _CHECKOUT_GIN_DIR
SEARCH_PATHS = (os.path.dirname(GIN_DIR), GIN_DIR)

if __name__ == "__main__":
  print(",".join(SEARCH_PATHS))
