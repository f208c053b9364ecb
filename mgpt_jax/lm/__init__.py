"""The motion-language model: T5 network, motion vocabulary, decoding, HF conversion."""
