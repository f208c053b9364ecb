import sys

from mgpt_jax.cli import main

sys.exit(main())
