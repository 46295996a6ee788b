"""Data: sources, mixtures and the alignment score, synthetic languages, tokenizers, collators,
and the checks that the data can give what the spec asks of it (checks.py)."""
