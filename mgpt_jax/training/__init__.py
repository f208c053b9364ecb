"""Training: runner (gin entry point), partitioning, train state and optimizer, checkpoints."""
