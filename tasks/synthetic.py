"""Registers the mgpt_synthetic_* tasks and mixtures: the procedural dataset (HumanML3D layout)."""
from tasks import registry

registry.register_dataset("synthetic", "humanml3d")
