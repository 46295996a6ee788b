"""Preflight: what is checked before anything is written or started, after the spec has checked
its own fields (raysweep.spec): the plan `raysweep validate` prints, the data sources (files
exist, task data large enough), the tokenizer (trained, fetched or loaded), and the memory a
pretraining worker needs. `raysweep validate` and `raysweep run` both call `check`; a failed
check is one SpecError paragraph."""

from __future__ import annotations

from raysweep.checkpoint_source import checkpoint_source
from raysweep.data.checks import check_task_data
from raysweep.data.mixture import alignment_text
from raysweep.spec import SAVED_TOKENIZER_HINT, SpecError, SweepSpec


def plan_text(spec: SweepSpec, available: dict[str, int] | None = None) -> str:
    """What `raysweep validate` prints: the checkpoints, sizes and trial count."""
    lines = [f"sweep {spec.name!r}: storage {spec.folder.uri}",
             f"  tracking: {spec.resolved_tracking_uri()}"]
    lines += checkpoint_source(spec).plan_lines()
    for task in spec.tasks:
        lines.append(f"  task {task.name} ({task.source_lang}->{task.target_lang}, {task.data}): "
                     f"alignment score {alignment_text(spec.pretrain.mixture, task)}")
        known = (available or {}).get(task.name)
        lines.append(f"    finetune sizes (D_f, tokens): "
                     f"{', '.join(f'{t:,}' for t in task.finetune_tokens)}"
                     + (f" of {known:,} available" if known is not None
                        else " (data size checked when the run starts)"))
        lines.append(f"    learning rates: {', '.join(f'{lr:g}' for lr in task.lrs)}; "
                     f"{task.steps} steps of {task.batch_size} pairs; {task.seeds} finetune "
                     f"seed(s); {task.test_examples} test sentences")
    lines.append(f"  trials: {spec.num_trials()} "
                 f"({len(spec.checkpoint_tokens())} starting points x finetune sizes x learning "
                 f"rates x finetune seeds)")
    return "\n".join(lines)


def check(spec: SweepSpec, offline: bool = False):
    """Everything that can be checked before anything is written. Returns (tokenizer, available).

    offline=True (`raysweep validate`): hub tokenizers and hf: datasets are not fetched, so a
    paper-scale spec validates on a machine without network; their sizes are checked when the
    run starts (tokenizer None, available sizes missing)."""
    check_saved_tokenizer(spec)
    tokenizer = checkpoint_source(spec).check(offline)  # its checkpoints, data and tokenizer
    return tokenizer, check_task_data(spec, tokenizer)


def check_saved_tokenizer(spec: SweepSpec) -> None:
    """A `kind: saved` tokenizer's folder exists and holds a saved tokenizer (it is loaded by
    raysweep.data.tokenizer); a sweep that holds its own copy already needs it no more. (A bucket
    URI there is refused by the spec itself: TokenizerSpec.check.)"""
    tok = spec.tokenizer
    if tok.kind != "saved":
        return
    if (spec.root / "tokenizer" / "tokenizer_config.json").is_file():
        return  # the sweep holds its own copy already (a resumed run)
    where = f"{spec.source_file or '<spec>'}: field `tokenizer.path`"
    folder = tok.saved_folder(spec.base_dir)
    if not folder.is_dir():
        raise SpecError(f"{where}: {str(folder)!r} is not a folder. {SAVED_TOKENIZER_HINT}")
    if not (folder / "tokenizer_config.json").is_file():
        raise SpecError(f"{where}: {str(folder)!r} holds no saved tokenizer (no "
                        f"tokenizer_config.json, which saving a tokenizer writes last). "
                        f"{SAVED_TOKENIZER_HINT}")
