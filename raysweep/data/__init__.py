"""Data: sources, mixtures, synthetic languages, tokenizers, collators."""

from __future__ import annotations

from raysweep.spec import SpecError, SweepSpec


def check_sources(spec: SweepSpec, tokenizer) -> dict[str, int]:
    """Data-dependent validation: sources open, task data holds the largest D_f.

    Returns the training tokens available per task. Raises SpecError naming the field. With no
    tokenizer (validation offline), hub (hf:) sources are only parsed, and sizes not counted."""
    from raysweep.data.collators import finetune_prefix, pair_token_counts
    from raysweep.data.sources import SourceName, monolingual_source, parallel_splits

    where = spec.source_file or "<spec>"
    for i, comp in enumerate(spec.pretrain.mixture):
        field = f"pretrain.mixture[{i}].source"
        if tokenizer is None and SourceName.parse(comp.source, field, where).kind == "hf":
            continue
        monolingual_source(comp.source, comp.language, spec.seed, field, where, spec.base_dir)
    available = {}
    for i, task in enumerate(spec.tasks):
        if tokenizer is None:
            SourceName.parse(task.data, f"tasks[{i}].data", where)
            continue
        splits = parallel_splits(task, spec.seed, where, f"tasks[{i}].data", spec.base_dir)
        available[task.name] = sum(pair_token_counts(splits.train, tokenizer, task.max_length))
        largest = max(task.finetune_tokens)
        if largest > available[task.name]:
            raise SpecError(
                f"{where}: field `tasks[{i}].finetune_tokens` asks for {largest} tokens, but the "
                f"training data of task {task.name!r} ({task.data}) holds only "
                f"{available[task.name]} tokens (source + target, counted with the sweep's "
                f"tokenizer). Lower the finetune size or add data; nothing was written.")
        smallest = min(task.finetune_tokens)
        if not finetune_prefix(splits.train, tokenizer, task.max_length, smallest)[0]:
            raise SpecError(
                f"{where}: field `tasks[{i}].finetune_tokens` has {smallest} tokens, too few for "
                f"even one sentence pair of task {task.name!r} (the first one has "
                f"{pair_token_counts(splits.train[:1], tokenizer, task.max_length)[0]} tokens). "
                f"Raise the finetune size; nothing was written.")
    return available
