"""Preflight: what is checked before anything is written or started, after the spec has checked
its own fields (raysweep.spec): the plan `raysweep validate` prints (a sweep's, or a study's:
what its candidates share, then each candidate), the data sources (files exist, task data large
enough; each candidate's in a study), the tokenizer (trained, fetched or loaded), and the memory
a pretraining worker needs. `raysweep validate` and `raysweep run` both call `check`; a failed
check is one SpecError paragraph."""

from __future__ import annotations

from raysweep.checkpoint_source import checkpoint_source
from raysweep.data.checks import check_task_data
from raysweep.data.mixture import alignment_text
from raysweep.data.sources import monolingual_source
from raysweep.data.synthetic import Family
from raysweep.spec import SAVED_TOKENIZER_HINT, SourceName, SpecError, SweepSpec


def plan_text(spec: SweepSpec, available: dict[str, int] | None = None) -> str:
    """What `raysweep validate` prints: the checkpoints, sizes and trial count."""
    if spec.is_study:
        return _study_plan_text(spec, available)
    lines = [f"sweep {spec.name!r}: storage {spec.folder.uri}",
             f"  tracking: {spec.resolved_tracking_uri()}"]
    lines += checkpoint_source(spec).plan_lines()
    for task in spec.tasks:
        lines += _task_lines(task, available,
                             f": alignment score {alignment_text(spec.pretrain.mixture, task)}")
    lines.append(f"  trials: {spec.num_trials()} "
                 f"({len(spec.checkpoint_tokens())} starting points x finetune sizes x learning "
                 f"rates x finetune seeds)")
    return "\n".join(lines)


def _task_lines(task, available: dict[str, int] | None, alignment: str) -> list[str]:
    """A task's lines of the plan: its data, finetune sizes and grid (`alignment` after its
    name: a sweep's score; in a study each candidate has its own)."""
    known = (available or {}).get(task.name)
    return [f"  task {task.name} ({task.source_lang}->{task.target_lang}, {task.data}){alignment}",
            f"    finetune sizes (D_f, tokens): "
            f"{', '.join(f'{t:,}' for t in task.finetune_tokens)}"
            + (f" of {known:,} available" if known is not None
               else " (data size checked when the run starts)"),
            f"    learning rates: {', '.join(f'{lr:g}' for lr in task.lrs)}; "
            f"{task.steps} steps of {task.batch_size} pairs; {task.seeds} finetune "
            f"seed(s); {task.test_examples} test sentences"]


def _study_plan_text(spec: SweepSpec, available: dict[str, int] | None) -> str:
    """A study's plan: what its candidates share, once; then each candidate (its mixture and
    alignment, its checkpoints, its trials); the total, with the baseline counted once; and the
    stopping policy. A checkpoint line every candidate has alike is shared (the model, the
    pretraining settings), so it is printed once."""
    source = checkpoint_source(spec)
    candidates = [s.spec for s in source.sources.values()]
    own, shared = [s.plan_lines() for s in source.sources.values()], source.plan_lines()
    per_point = spec.trials_per_point()
    lines = [f"study {spec.name!r}: {len(candidates)} candidates, storage {spec.folder.uri}",
             f"  tracking: {spec.resolved_tracking_uri()} (one store for the whole study)",
             "  shared by every candidate:", *(f"  {line}" for line in shared)]
    for task in spec.tasks:
        lines += _task_lines(task, available, "")
    for candidate, source_lines in zip(candidates, own):
        alignment = ", ".join(f"{task.name} {alignment_text(candidate.pretrain.mixture, task)}"
                              for task in spec.tasks)
        points = len(candidate.published_tokens())
        lines.append(f"  candidate {candidate.candidate} (its folder: candidates/"
                     f"{candidate.candidate}/): alignment score {alignment}")
        lines += [f"  {line}" for line in source_lines if line not in shared]
        lines.append(f"    trials: {points * per_point} ({points} checkpoints x {per_point})")
    lines.append(f"  trials: {spec.num_trials()} in all = {per_point} of the no-pretraining "
                 f"baseline, once (every candidate starts from it) + "
                 f"{spec.num_trials() - per_point} of the candidates' checkpoints ({per_point} "
                 f"each: finetune sizes x learning rates x finetune seeds)")
    lines.append(f"  stopping: {_stop_text(spec)}")
    return "\n".join(lines)


def _stop_text(spec: SweepSpec) -> str:
    stop = spec.stop
    if stop is None:
        return "off (every candidate runs its whole schedule)"
    return (f"once every candidate has {stop.after} checkpoints, a candidate that the leader "
            f"beats on {stop.metric} with probability >= {stop.confidence:g} at every finetune "
            f"size stops pretraining (its finished checkpoints and trials stay)")


def check(spec: SweepSpec, offline: bool = False):
    """Everything that can be checked before anything is written. Returns (tokenizer, available).

    offline=True (`raysweep validate`): hub tokenizers and hf: datasets are not fetched, so a
    paper-scale spec validates on a machine without network; their sizes are checked when the
    run starts (tokenizer None, available sizes missing)."""
    check_saved_tokenizer(spec)
    open_candidate_sources(spec)
    tokenizer = checkpoint_source(spec).check(offline)  # its checkpoints, data and tokenizer
    return tokenizer, check_task_data(spec, tokenizer)


def open_candidate_sources(spec: SweepSpec) -> None:
    """A study's candidates' sources open (a file exists, a name parses), each error naming the
    candidate's field (`candidates[2].mixture[0].source`). The study's checkpoint source then
    checks what they hold with the study's tokenizer (rows, and enough text for the schedule);
    hub (hf:) sources are only parsed here, as they are opened there."""
    where = spec.source_file or "<spec>"
    for i, candidate in enumerate(spec.candidates):
        for j, component in enumerate(candidate.mixture):
            field = f"candidates[{i}].mixture[{j}].source"
            if SourceName.parse(component.source, field, where).kind != "hf":
                monolingual_source(component.source, component.language, Family.of(spec), field,
                                   where, spec.base_dir)


def check_saved_tokenizer(spec: SweepSpec) -> None:
    """A `kind: saved` tokenizer's folder exists and holds a saved tokenizer (it is loaded by
    raysweep.data.tokenizer); a sweep that holds its own copy already needs it no more. (A bucket
    URI there is refused by the spec itself: TokenizerSpec.check.)"""
    tok = spec.tokenizer
    if tok.kind != "saved":
        return
    # A study's candidates share the study's copy (raysweep.data.tokenizer.tokenizer_dir).
    if (spec.study_folder.root / "tokenizer" / "tokenizer_config.json").is_file():
        return  # the sweep holds its own copy already (a resumed run)
    where = f"{spec.source_file or '<spec>'}: field `tokenizer.path`"
    folder = tok.saved_folder(spec.base_dir)
    if not folder.is_dir():
        raise SpecError(f"{where}: {str(folder)!r} is not a folder. {SAVED_TOKENIZER_HINT}")
    if not (folder / "tokenizer_config.json").is_file():
        raise SpecError(f"{where}: {str(folder)!r} holds no saved tokenizer (no "
                        f"tokenizer_config.json, which saving a tokenizer writes last). "
                        f"{SAVED_TOKENIZER_HINT}")
