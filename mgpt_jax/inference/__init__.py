"""Inference: trained systems loaded for use (tokenizer export, bundles, the MotionGPT API)."""
