"""Registers the mgpt_humanml3d_* tasks and mixtures: HumanML3D (263-d features, 20 fps)."""
from tasks import registry

registry.register_dataset("humanml3d", "humanml3d")
