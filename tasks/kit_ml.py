"""Registers the mgpt_kit_ml_* tasks and mixtures: KIT-ML (251-d features, 12.5 fps)."""
from tasks import registry

registry.register_dataset("kit_ml", "kit")
