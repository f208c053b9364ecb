"""Training models: a network plus its loss, as T5X's models wrap modules."""
