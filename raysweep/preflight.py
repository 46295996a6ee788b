"""Preflight: what is checked before anything is written or started, after the spec has checked
its own fields (raysweep.spec): the plan `raysweep validate` prints, the data sources (files
exist, task data large enough), the tokenizer (trained, fetched or loaded), and the memory a
pretraining worker needs. `raysweep validate` and `raysweep run` both call `check`; a failed
check is one SpecError paragraph."""

from __future__ import annotations

from raysweep.spec import SpecError, SweepSpec


def plan_text(spec: SweepSpec, available: dict[str, int] | None = None) -> str:
    """What `raysweep validate` prints: the checkpoints, sizes and trial count."""
    from raysweep.data.mixture import alignment_score

    lines = [f"sweep {spec.name!r}: storage {spec.folder.uri}",
             f"  tracking: {spec.resolved_tracking_uri()}"]
    if spec.series:
        lines += _series_plan(spec)
    else:
        lines += _pretraining_plan(spec)
    for task in spec.tasks:
        lines.append(f"  task {task.name} ({task.source_lang}->{task.target_lang}, {task.data}): "
                     f"alignment score {alignment_score(spec.pretrain.mixture, task):.2f}")
        known = (available or {}).get(task.name)
        lines.append(f"    finetune sizes (D_f, tokens): {', '.join(f'{t:,}' for t in task.finetune_tokens)}"
                     + (f" of {known:,} available" if known is not None
                        else " (data size checked when the run starts)"))
        lines.append(f"    learning rates: {', '.join(f'{lr:g}' for lr in task.lrs)}; "
                     f"{task.steps} steps of {task.batch_size} pairs; {task.seeds} finetune "
                     f"seed(s); {task.test_examples} test sentences")
    lines.append(f"  trials: {spec.num_trials()} "
                 f"({len(spec.checkpoint_tokens())} starting points x finetune sizes x learning rates x "
                 f"finetune seeds)")
    return "\n".join(lines)


def _pretraining_plan(spec: SweepSpec) -> list[str]:
    from raysweep.pretrain.engine import memory_estimate, worker_memory_bytes

    pre, lines = spec.pretrain, [f"  pretraining mixture: {_mixture(spec)}"]
    memory = memory_estimate(spec, _vocab_size(spec, None))
    lines.append(f"  pretraining: {pre.workers} workers, ZeRO-{pre.zero_stage}, {pre.optimizer}, "
                 f"{pre.tokens_per_step()} tokens/step; {spec.model.preset or 'custom'} "
                 f"{'decoder-only' if spec.model.family == 'causal' else 'encoder-decoder'} model, "
                 f"{memory['parameters'] / 1e6:,.1f}M parameters, about "
                 f"{memory['total_bytes'] / 2**30:.2f} GiB per worker of "
                 f"{worker_memory_bytes(spec) / 2**30:.0f} GiB")
    tokens = spec.published_tokens()
    lines.append(f"  checkpoints (D_p, tokens): {', '.join(f'{t:,}' for t in tokens)} "
                 f"+ the no-pretraining baseline (D_p = 0); budget {tokens[-1]:,} tokens")
    lines.append(f"  recovery: a checkpoint every {pre.recovery_every} steps (keep "
                 f"{pre.recovery_keep}), up to {pre.max_failures} restarts")
    return lines


def _series_plan(spec: SweepSpec) -> list[str]:
    series = spec.series
    where = f"hub model {series.hub}" if series.hub else f"folder {series.folder}"
    return [f"  checkpoints made elsewhere: {where}, trained on {_mixture(spec)}",
            "  checkpoints (D_p, tokens): "
            + ", ".join(f"{p.tokens:,} ({series.label(p).rsplit('@', 1)[-1].rsplit('/', 1)[-1]})"
                        for p in series.points())
            + " + the same architecture freshly initialised (D_p = 0); the model's own tokenizer"]


def _mixture(spec: SweepSpec) -> str:
    return ", ".join(f"{c.source} x {c.weight:g}" for c in spec.pretrain.mixture)


def needs_network(spec: SweepSpec) -> bool:
    """Whether preparing this spec reads from the hub (a hub tokenizer, or hf: sources)."""
    mixture = [] if spec.series else [c.source for c in spec.pretrain.mixture]  # not read then
    sources = mixture + [t.data for t in spec.tasks]
    return spec.tokenizer.kind == "hub" or any(s.startswith("hf:") for s in sources) \
        or bool(spec.series and spec.series.hub)


def check(spec: SweepSpec, offline: bool = False):
    """Everything that can be checked before anything is written. Returns (tokenizer, available).

    offline=True (`raysweep validate`): hub tokenizers and hf: datasets are not fetched, so a
    paper-scale spec validates on a machine without network; their sizes are checked when the
    run starts (tokenizer None, available sizes missing)."""
    from raysweep.data import check_sources
    from raysweep.data.tokenizer import (
        fetch_tokenizer,
        load_tokenizer,
        tokenizer_dir,
        train_tokenizer,
    )

    # Offline (validate), a bucket is not read either: the tokenizer is trained or fetched at run.
    saved = tokenizer_dir(spec) if offline else fetch_tokenizer(spec)
    if spec.series:
        tokenizer = _check_series(spec, offline, saved)
    elif (saved / "tokenizer_config.json").exists():
        tokenizer = load_tokenizer(saved)
    elif offline and needs_network(spec):
        tokenizer = None
    else:
        try:
            tokenizer = train_tokenizer(spec)
        except OSError as err:  # a hub tokenizer that cannot be fetched
            if spec.tokenizer.kind != "hub":
                raise
            raise SpecError(f"{spec.source_file}: field `tokenizer.hub_id`: "
                            f"{spec.tokenizer.hub_id!r} could not be loaded "
                            f"({' '.join(str(err).split())[:300]}). Check the id and the network, "
                            f"or use tokenizer.kind unigram; nothing was written.") from None
    available = check_sources(spec, tokenizer)
    if not spec.series:  # nothing is pretrained
        check_memory(spec, tokenizer)
    return tokenizer, available


def _check_series(spec: SweepSpec, offline: bool, saved):
    """A series' checkpoints (they exist, hold safetensors, share one architecture) and its
    tokenizer; offline (validate), a hub or bucket series is not read (tokenizer None)."""
    from raysweep.data.tokenizer import load_tokenizer
    from raysweep.series import check_series, load_series_tokenizer
    from raysweep.storage import is_remote

    if offline and (spec.series.hub or is_remote(spec.series.folder)):
        return None
    check_series(spec, only_complete=spec.series.attach)
    if (saved / "tokenizer_config.json").exists():
        return load_tokenizer(saved)
    return load_series_tokenizer(spec)


def _vocab_size(spec: SweepSpec, tokenizer) -> int:
    if tokenizer is not None:
        return len(tokenizer)
    # Offline validation of a hub tokenizer: mT5's vocabulary (the paper's) as the estimate.
    return {"unigram": spec.tokenizer.vocab_size + spec.tokenizer.sentinels,
            "byt5": 259 + spec.tokenizer.sentinels}.get(spec.tokenizer.kind, 250_112)


def check_memory(spec: SweepSpec, tokenizer) -> None:
    """Too little memory for the model is said before anything starts, from a size estimate."""
    from raysweep.pretrain.engine import memory_estimate, worker_memory_bytes

    need = memory_estimate(spec, _vocab_size(spec, tokenizer))
    have = worker_memory_bytes(spec)
    if need["total_bytes"] > have:
        pre, gib = spec.pretrain, 2**30
        raise SpecError(
            f"{spec.source_file or '<spec>'}: pretraining this model needs about "
            f"{need['total_bytes'] / gib:.1f} GiB per worker ({need['parameters'] / 1e6:,.0f}M "
            f"parameters: weights, gradients and {pre.optimizer} states "
            f"{need['states_bytes'] / gib:.1f} GiB with ZeRO-{pre.zero_stage} over {pre.workers} "
            f"workers, activations {need['activation_bytes'] / gib:.1f} GiB), but each worker has "
            f"{have / gib:.1f} GiB (resources.worker_memory_gb). Raise pretrain.workers or "
            f"pretrain.zero_stage, set pretrain.gradient_accumulation or "
            f"pretrain.activation_checkpointing, or choose a smaller model.preset; nothing was "
            f"written.")
