"""The data checks before anything is written: the sources open and hold what the spec asks."""

from __future__ import annotations

from raysweep.data.collators import finetune_prefix, pair_token_counts
from raysweep.data.mixture import steps_by_source, total_steps
from raysweep.data.sources import SourceName, monolingual_source, parallel_splits
from raysweep.data.synthetic import Family
from raysweep.spec import SpecError, SweepSpec


def check_mixture_sources(spec: SweepSpec, tokenizer) -> None:
    """The pretraining mixture's sources open, and a finite one holds what the schedule draws
    from it. Every row of a local file is read, so a bad one is reported here, before anything
    is written. With no tokenizer (validation offline), hub (hf:) sources are only parsed."""
    where = spec.source_file or "<spec>"
    for i, comp in enumerate(spec.pretrain.mixture):
        field = f"pretrain.mixture[{i}].source"
        kind = SourceName.parse(comp.source, field, where).kind
        if tokenizer is None and kind == "hf":
            continue
        source = monolingual_source(comp.source, comp.language, Family.of(spec), field, where,
                                    spec.base_dir)
        if kind == "file":  # finite, so counted: no rank may run out (hub streams cannot be)
            _check_enough_text(spec, i, source, tokenizer, field, where)


def check_task_data(spec: SweepSpec, tokenizer) -> dict[str, int]:
    """Every task's data opens and holds the largest D_f; returns the training tokens available
    per task. Raises SpecError naming the field. With no tokenizer (validation offline), hub
    (hf:) sources are only parsed, and sizes not counted."""
    where = spec.source_file or "<spec>"
    available = {}
    for i, task in enumerate(spec.tasks):
        if tokenizer is None:
            SourceName.parse(task.data, f"tasks[{i}].data", where)
            continue
        splits = parallel_splits(task, Family.of(spec), where, f"tasks[{i}].data", spec.base_dir)
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


def _check_enough_text(spec: SweepSpec, index: int, source, tokenizer, field: str,
                       where: str) -> None:
    """Every rank's shard of a finite source holds the tokens the schedule draws from it.

    The schedule is exact: step s (1..total) draws all its sequences from mixture component
    `batch_source(spec, s)`, each rank `batch_size // workers` packed sequences of seq_len tokens.
    The laws assume no data is repeated, so running out would stop pretraining part way. With no
    tokenizer, the rows are only read (and so checked), not counted.

    Every row is read once, untokenized (a bad row is reported before anything starts); each
    rank's shard is then tokenized only until it holds what the schedule needs."""
    source.check_rows()
    if tokenizer is None:  # offline: nothing to count with
        return
    pre = spec.pretrain
    steps = steps_by_source(spec, total_steps(spec))[index]
    per_rank = pre.batch_size // pre.workers
    needed = steps * per_rank * pre.seq_len
    for rank in range(pre.workers):
        available = source.token_count(rank, pre.workers, tokenizer, enough=needed)
        if available < needed:
            raise SpecError(
                f"{where}: field `{field}`: {source.name} gives pretraining worker {rank} (of "
                f"{pre.workers}) {available:,} tokens, but the schedule needs {needed:,} from it "
                f"({steps} of {total_steps(spec)} steps draw from this source, each {per_rank} "
                f"sequences of {pre.seq_len} tokens per worker; counted with the sweep's "
                f"tokenizer, </s> included). The scaling laws assume no data is repeated: add "
                f"data, or lower pretrain.checkpoints or pretrain.mixture[{index}].weight; "
                f"nothing was written.")
