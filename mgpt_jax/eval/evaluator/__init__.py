"""The T2M text-motion matching evaluator (Guo et al., CVPR'22) in Flax, with a safe
importer for the official PyTorch checkpoint and GloVe files, so that R-precision,
MM-Dist, FID and diversity are measured in the same embedding space as the papers."""
