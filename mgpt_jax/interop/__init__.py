"""Weights from and to elsewhere, one module per foreign format; each writes our own formats."""
