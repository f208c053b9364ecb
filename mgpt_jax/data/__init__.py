"""Motion data: HumanML3D/KIT-ML formats, skeletons, feature math, synthetic data, tfds."""
