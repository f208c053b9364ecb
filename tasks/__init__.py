"""seqio tasks and mixtures of MotionGPT's stages 2 and 3, registered on import.

    import tasks            # every dataset; or import tasks.humanml3d / tasks.kit_ml / ...
    seqio.get_mixture_or_task("mgpt_humanml3d_instruct")

See tasks/registry.py for the names, tasks/sources.py for where the data is read from and
tasks/vocabulary.py for the vocabulary.
"""
from tasks import humanml3d, kit_ml, synthetic  # noqa: F401  (registration)
