"""mgpt_jax: MotionGPT (human motion as a foreign language) on JAX/Flax, T5X and seqio."""
from setuptools import find_packages, setup

setup(
    name="mgpt_jax",
    version="0.1.0",
    description="MotionGPT rebuilt as a JAX/TPU-scale training system",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",  # datetime.UTC (inference/bundle.py); jax 0.7 needs 3.11 too
    # The top-level gin/ installs as mgpt_jax/gin/: one copy on disk, found by
    # mgpt_jax/gin_paths.py in a checkout and in an installed package alike.
    packages=find_packages(include=["mgpt_jax", "mgpt_jax.*", "tasks", "tasks.*"]) + ["mgpt_jax.gin"],
    package_dir={"mgpt_jax.gin": "gin"},
    package_data={"tasks": ["templates/*.json"], "mgpt_jax.gin": ["**/*.gin"],
                  "mgpt_jax.inference": ["kernels/*.cc", "kernels/*.h"]},
    install_requires=[
        "jax>=0.7.1,<0.11",  # jax.set_mesh (training/partitioning.py)
        "flax>=0.10,<0.13",
        "optax>=0.2.5,<0.3",  # optax.tree.norm (training/trainer.py)
        # Before 0.11.19 orbax imports jax.experimental.layout.DeviceLocalLayout, gone in jax 0.7.
        "orbax-checkpoint>=0.11.19,<0.13",
        "seqio>=0.0.19",
        "tensorflow-cpu>=2.16,<2.22",
        "tensorflow-datasets>=4.9.6,<4.10",
        # tfds imports it at build time but declares it only for Python < 3.9.
        "importlib_resources>=5",
        "gin-config>=0.5,<0.6",
        "sentencepiece>=0.2,<0.3",
        "clu>=0.0.12",
        "tensorboard>=2.16",  # clu's summary writer needs it; tensorflow-cpu no longer pulls it in
        "absl-py>=1.4",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "matplotlib>=3.8,<4",
        "imageio-ffmpeg>=0.5,<1",  # its wheel ships the ffmpeg binary that encodes MP4 renders
        "tqdm>=4.66,<5",
        "pycocoevalcap>=1.2,<1.3",  # the MS-COCO caption scorers (BLEU, ROUGE-L, CIDEr) for M2T
    ],
    extras_require={
        # torch 2.13.0 is pinned so pip takes the local CPU build and never a CUDA one.
        # The demo's browser test also needs Chromium and its driver (apt: chromium chromium-driver).
        "test": ["pytest>=8", "transformers>=4.46,<6", "safetensors>=0.4", "torch==2.13.0",
                 "bert-score>=0.3.13,<0.4", "gradio>=6,<7", "selenium>=4.20,<5"],
        # `mgpt demo`, the web app.
        "demo": ["gradio>=6,<7"],
        # BERTScore for M2T; its model (roberta-large) must be downloaded separately.
        "eval": ["bert-score>=0.3.13,<0.4"],
        # t5x is not on PyPI: pip install "t5x @ git+https://github.com/google-research/t5x"
        "t5x": [],
    },
    entry_points={"console_scripts": ["mgpt=mgpt_jax.cli:main"]},
)
