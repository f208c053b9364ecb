"""Evaluation: metrics as small plug-ins, evaluators, protocol."""
