"""Checkpoint series made elsewhere (the spec's `series`), finetuned in place of pretraining.

checks.py reads and checks the checkpoints (config and file list, safetensors only, one
architecture) and the model's own tokenizer; attach.py follows a folder a trainer is still writing
(when a checkpoint is complete, `raysweep stop`); source.py is the series' checkpoint source
(raysweep.checkpoint_source): it imports the checkpoints into the sweep's published form.
"""
