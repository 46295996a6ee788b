"""The sweep spec: YAML -> a validated, immutable `SweepSpec`.

Every field is documented where it is declared. Validation happens entirely here, before anything
is written or started, so a bad spec costs the user one clear paragraph and nothing else
(`SpecError`, exit status 2 on the command line).

The spec is composed per component (model, tokenizer, pretrain, tasks, evaluation, fit, resources),
each a dataclass that later issues can grow without touching the others.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SpecError(ValueError):
    """A spec that cannot be run. The message is one paragraph naming the field or file."""


# --------------------------------------------------------------------------------------------------
# Components


@dataclass(frozen=True)
class ModelSpec:
    """T5-style encoder-decoder dimensions (T5 v1.1 naming): a `preset`, or explicit dims (fields
    written next to a preset override it)."""

    preset: str | None = None
    """One of MODEL_PRESETS: t5-tiny (tests, demo), t5-small, t5-base, t5-770m, t5-3b."""
    d_model: int = 64
    """Width of the residual stream."""
    d_ff: int = 128
    """Width of the feed-forward layers."""
    num_layers: int = 2
    """Encoder layers."""
    num_decoder_layers: int = 2
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads."""
    d_kv: int = 16
    """Width of each attention head."""
    dropout: float = 0.0
    """Dropout rate (the paper's T5 pretraining uses none)."""
    feed_forward: str = "gated-gelu"
    """Feed-forward block: `gated-gelu` (T5 v1.1) or `relu` (the original T5, e.g. T5-3B)."""


# The paper's T5-770M (T5 v1.1 large) and T5-3B (the original T5's, ReLU feed-forward), and
# T5 v1.1's small and base. The vocabulary comes from the sweep's tokenizer.
MODEL_PRESETS = {
    "t5-tiny": dict(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16),
    "t5-small": dict(d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6, d_kv=64),
    "t5-base": dict(d_model=768, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64),
    "t5-770m": dict(d_model=1024, d_ff=2816, num_layers=24, num_decoder_layers=24, num_heads=16, d_kv=64),
    "t5-3b": dict(d_model=1024, d_ff=16384, num_layers=24, num_decoder_layers=24, num_heads=32, d_kv=128,
                  feed_forward="relu"),
}


@dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer every stage of the sweep shares (saved once under the sweep's storage).

    Cross-entropy is in nats per token, so sweeps meant to be compared must share one tokenizer:
    give them the same `train_sources`, or point the later ones at a saved one (`kind: saved`)."""

    kind: str = "unigram"
    """`unigram`: trained offline on the sweep's mixture and task data (or on `train_sources`);
    `byt5`: bytes, nothing to train; `hub`: loaded by `hub_id` (needs network on first use);
    `saved`: the saved tokenizer folder at `path`, copied into the sweep's storage."""
    vocab_size: int = 1000
    """Vocabulary size for `unigram` (T5 sentinels come on top)."""
    train_documents: int = 20000
    """How many documents the `unigram` tokenizer is trained on, in equal shares per source."""
    train_sources: tuple[str, ...] = ()
    """Monolingual sources the `unigram` tokenizer is trained on instead of the sweep's own mixture
    and task data, e.g. `[synthetic:en, synthetic:de, synthetic:fr, synthetic:ro]`: sweeps with the
    same list (and vocab_size, train_documents, seed, synthetic) train the same tokenizer whatever
    their mixtures. Empty (default): the mixture's sources and the tasks' training sides."""
    hub_id: str | None = None
    """Tokenizer id on the hub for `kind: hub`, e.g. `google/mt5-base`."""
    path: str | None = None
    """Saved tokenizer folder for `kind: saved`, e.g. another sweep's `<storage>/<sweep>/tokenizer`
    (written when that sweep starts); a local folder, relative to the spec file's folder. Read
    once: the sweep then keeps its own copy."""
    sentinels: int = 100
    """Number of T5 sentinel tokens `<extra_id_i>` for span corruption (`unigram`, `byt5`)."""

    def saved_folder(self, base_dir: str | None) -> Path:
        """`path` on this machine: relative paths are taken from the spec file's folder."""
        return (Path(base_dir or ".") / (self.path or "")).resolve()


@dataclass(frozen=True)
class SyntheticSpec:
    """The offline family of synthetic languages behind every `synthetic:` source
    (raysweep/data/synthetic.py): one meaning space, per-language words, order and morphology."""

    relatedness: float = 0.3
    """Probability that a language's word for a concept is a cognate (a sound-shifted copy) of the
    family's proto word: 0 = unrelated lexicons, 1 = every word a cognate."""
    nouns: int = 30
    """Concepts per part of speech: fewer make translation easier to learn."""
    verbs: int = 12
    adjectives: int = 8


@dataclass(frozen=True)
class MixtureComponent:
    source: str
    """A monolingual source: `synthetic:LANG`, `file:PATH` (JSONL with "text", or .txt),
    or `hf:DATASET[:CONFIG]`."""
    weight: float
    """Probability that a batch is drawn from this source. Weights sum to 1."""
    language: str | None = None
    """Language code of the source (for the alignment score); implied by `synthetic:LANG`."""


@dataclass(frozen=True)
class PretrainSpec:
    """Pretraining with Ray Train + DeepSpeed on the mixture."""

    mixture: tuple[MixtureComponent, ...] = ()
    """Sources with weights; one source is chosen per batch, as in the paper."""
    checkpoints: tuple[int, ...] = ()
    """Scheduled D_p in tokens: a list, or `{first: N, count: K}` for K log-spaced values from N to
    `tokens`. A checkpoint is published at the first step whose tokens seen reach each value; its
    exact D_p (a whole number of steps) is printed by `raysweep validate`."""
    tokens: int | None = None
    """The pretraining budget in tokens: training stops there, and the final model is published as
    the last checkpoint. Default: the last scheduled checkpoint."""
    batch_size: int = 16
    """Sequences per optimiser step, over all workers together."""
    seq_len: int = 64
    """Tokens of raw text per sequence, before span corruption (packed, so no padding)."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup_steps: int = 50
    """Linear warm-up steps, then inverse square root decay."""
    workers: int = 2
    """Ray Train workers (one DeepSpeed rank each)."""
    zero_stage: int = 1
    """DeepSpeed ZeRO stage: 0, 1, 2 or 3."""
    optimizer: str = "adamw"
    """`adamw` (torch's AdamW) or `adafactor` (the paper's; transformers' Adafactor at the
    spec's lr and schedule, without its own relative-step schedule)."""
    gradient_accumulation: int = 1
    """Micro-batches per optimiser step on each worker: the same tokens per step (batch_size is
    over all workers), less activation memory. batch_size must divide by workers x this."""
    gradient_clipping: float = 1.0
    """Largest global gradient norm; 0 turns clipping off."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    precision: str = "auto"
    """`auto` (bf16 with a GPU, fp32 on CPU), `bf16` (needs resources.use_gpu) or `fp32`."""
    noise_density: float = 0.15
    """Share of tokens masked by span corruption."""
    mean_span_length: float = 3.0
    """Mean length of a masked span."""
    log_every: int = 10
    """Steps between logged pretraining metrics."""
    recovery_every: int = 100
    """Steps between recovery checkpoints (full DeepSpeed state, for restarts; one is also saved
    at every published checkpoint). Separate from the published evaluation checkpoints."""
    recovery_keep: int = 2
    """Recovery checkpoints kept; older ones are deleted (rotation)."""
    max_failures: int = 3
    """Worker or node failures pretraining survives: each restarts the workers from the latest
    recovery checkpoint (Ray Train's FailureConfig)."""

    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def published_tokens(self) -> list[int]:
        """The exact D_p of each scheduled checkpoint and of the budget: whole steps, rounded up."""
        per_step = self.tokens_per_step()
        wanted = set(self.checkpoints) | ({self.tokens} if self.tokens else set())
        return sorted({math.ceil(t / per_step) * per_step for t in wanted})


@dataclass(frozen=True)
class TaskSpec:
    """A downstream translation task, finetuned from every checkpoint and from scratch."""

    name: str
    """Name used in trial keys and MLflow, e.g. `en-de`."""
    source_lang: str
    """Language translated from."""
    target_lang: str
    """Language translated to."""
    data: str
    """A parallel source: `synthetic:SRC-TGT`, `file:PATH` (JSONL `{"translation": {...}}` or TSV),
    or `hf:DATASET:CONFIG` (WMT layout)."""
    finetune_tokens: tuple[int, ...]
    """Finetune sizes D_f in tokens (source + target tokens, end-of-sequence included)."""
    lrs: tuple[float, ...] = (1e-3,)
    """Constant learning rates tried for every (checkpoint, D_f); the best by dev cross-entropy is
    used in the fits."""
    steps: int = 100
    """Optimiser steps per finetune trial (cycling over the D_f tokens)."""
    batch_size: int = 16
    """Sentence pairs per finetune step."""
    max_length: int = 48
    """Longest source or target kept, in tokens."""
    dev_examples: int = 100
    """Sentence pairs in the dev set (learning-rate choice)."""
    test_examples: int = 100
    """Sentence pairs in the test set (reported metrics)."""
    train_examples: int = 20000
    """Sentence pairs available for finetuning (synthetic sources generate this many)."""
    eval_every: int = 0
    """Steps between dev cross-entropy checks during finetuning; 0 = none (the paper's fixed steps)."""
    patience: int = 0
    """With eval_every: stop after this many checks without a better dev cross-entropy and keep
    the best weights (early stopping); 0 = run all `steps`."""
    seeds: int = 1
    """Finetune replicates of every (checkpoint, D_f, lr): seeds `seed`, `seed` + 1, ... (each
    shuffles the D_f batches and seeds the baseline's initial weights differently). A law point is
    their mean; with 2 or more, the spread between seeds enters its standard error, so a verdict
    can tell finetuning noise from a failing law."""


@dataclass(frozen=True)
class EvaluationSpec:
    comet_model: str = "Unbabel/wmt22-comet-da"
    """COMET model: a hub id, a local checkpoint directory, or `tiny-local` (a small model built
    offline under the sweep's storage: real COMET code, meaningless scores; for demos and tests)."""
    comet_batch_size: int = 16
    """Sentences per COMET forward pass."""
    comet_gpus: float = 0
    """GPU share of each node's shared COMET scorer actor (raysweep/scorer.py); 0 scores on CPU."""
    max_new_tokens: int = 48
    """Longest generated translation, in tokens."""
    num_beams: int = 1
    """1 = greedy decoding."""
    bleu_tokenize: str = "13a"
    """sacrebleu tokenizer (13a, intl, zh, char, none)."""


METRICS = ("bleu", "chrf", "rougeL", "comet", "cross_entropy")
LR_CHOICES = ("dev_cross_entropy", "dev_bleu", "dev_chrf")


@dataclass(frozen=True)
class FitSpec:
    """Scaling-law fitting options."""

    metrics: tuple[str, ...] = METRICS
    """Metrics to fit: task metrics get the log-law, `cross_entropy` the power law."""
    huber_delta: dict[str, float] = field(default_factory=dict)
    """Huber delta per metric, overriding the paper's defaults (0.1 task metrics, 1e-3 CE)."""
    lr_choice: str = "dev_cross_entropy"
    """How the best learning rate of each (checkpoint, D_f) is chosen, always on the dev set:
    `dev_cross_entropy` (lowest), `dev_bleu` or `dev_chrf` (highest; the dev set is decoded)."""
    min_points: int = 3
    """Fewest checkpoints (D_p > 0) before a law is fitted."""
    target_tokens: int | None = None
    """D_p at which to predict the metric (the size you are considering pretraining on)."""
    target_score: dict[str, float] = field(default_factory=dict)
    """Per metric, the score you need (e.g. {bleu: 30}): the answer says at what D_p the fitted law
    reaches it."""
    min_effect: dict[str, float] = field(default_factory=dict)
    """Per metric, the smallest change worth telling from none, in the metric's units, overriding
    the defaults (0.5 BLEU or chrF point, 0.005 ROUGE-L or COMET, 0.02 nats of cross-entropy).
    "No effect" means every change is measured to lie within it; an inconclusive verdict says how
    much less noise it would take to resolve a change of this size."""
    bootstrap_resamples: int = 200
    """Bootstrap refits behind every interval (the online fitter repeats them at each update)."""
    interval_level: float = 0.9
    """Coverage of the reported intervals."""
    backtest_points: int = 4
    """The paper's check: fit on this many smallest-D_p checkpoints, predict the rest; the law
    predicts when every held-out checkpoint lands inside that fit's own predictive interval (its
    relative error is reported too: the paper's figure, <= 0.061 for BLEU on aligned mixtures)."""


@dataclass(frozen=True)
class ResourceSpec:
    local_cpus: int = 8
    """Logical CPUs for a local Ray (oversubscribed on purpose, so pretraining and finetuning can
    run together on a laptop; threads are pinned to 1 per process)."""
    pretrain_worker_cpus: float = 1
    """CPUs requested by each pretraining worker."""
    trial_cpus: float = 1
    """CPUs requested by each finetune trial."""
    max_concurrent_trials: int = 2
    """Finetune trials running at once."""
    trial_retries: int = 1
    """Times a failed finetune trial is run again (a lost spot node, a transient error) before it is
    recorded as failed, with its reason, in its MLflow run."""
    use_gpu: bool = False
    """Pretraining workers and trials request a GPU each."""
    peak_tflops: float | None = None
    """Peak dense TFLOP/s of one pretraining worker's device, for the logged MFU. Default: looked up
    from the GPU's name (bf16 tensor-core peak), or estimated for a CPU from its clock."""
    worker_memory_gb: float | None = None
    """Memory of each pretraining worker's device in GiB (GPU memory with use_gpu, else RAM),
    checked against an estimate before anything starts. Default: 80 with a GPU (A100/H100 80GB),
    else this machine's RAM shared by the workers."""
    pretrain_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each pretraining worker requests, e.g. {pretrain_pool: 1}: on a
    cluster, only the node type that advertises them (cluster.yaml) runs pretraining."""
    trial_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each finetune trial requests, e.g. {finetune_pool: 1}."""
    coordinator_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources of the watcher and fitter actors, e.g. {coordinator: 0.01}: keeps them
    on the on-demand head node, where a spot preemption cannot take them."""


@dataclass(frozen=True)
class SweepSpec:
    name: str
    """Sweep name: the MLflow experiment and the folder under `storage`."""
    storage: str = "./raysweep-runs"
    """Where checkpoints, tokenizer and (by default) MLflow live: a folder (relative paths are
    taken from the spec file's folder; `file:///abs/path` is the folder /abs/path), or a bucket
    URI `s3://BUCKET/PREFIX` (`gs://` likewise) shared by every node of a cluster. `${VAR}` takes
    an environment variable."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: SQLite file `<storage>/<name>/mlflow.db` (a local storage
    folder only). `${VAR}` takes an environment variable, e.g. `${MLFLOW_TRACKING_URI}`."""
    seed: int = 0
    """Seed for data order, initialisation and finetuning."""
    model: ModelSpec = ModelSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()
    synthetic: SyntheticSpec = SyntheticSpec()
    pretrain: PretrainSpec = PretrainSpec()
    tasks: tuple[TaskSpec, ...] = ()
    evaluation: EvaluationSpec = EvaluationSpec()
    fit: FitSpec = FitSpec()
    resources: ResourceSpec = ResourceSpec()
    source_file: str | None = None
    """Set by `load_spec`: the YAML file this spec came from (not a YAML field)."""
    base_dir: str | None = None
    """Set by `load_spec`: the folder relative data paths are taken from (not a YAML field)."""

    # ---- derived paths -----------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """This node's folder for the sweep: the storage folder itself, or for a bucket storage
        a local cache of it (raysweep.storage)."""
        from raysweep.storage import local_root

        return local_root(self.storage, self.name)

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    # ---- the plan ------------------------------------------------------------------------------
    def checkpoint_tokens(self) -> list[int]:
        """D_p of every finetuned starting point, the no-pretraining baseline (0) first."""
        return [0] + self.pretrain.published_tokens()

    def num_trials(self) -> int:
        points = len(self.checkpoint_tokens())
        return sum(points * len(t.finetune_tokens) * len(t.lrs) * t.seeds for t in self.tasks)


# --------------------------------------------------------------------------------------------------
# Loading: a generic, strict dict -> dataclass builder (unknown fields are errors, names field paths)


def _fail(where: str, path: str, expected: str, got: Any) -> typing.NoReturn:
    raise SpecError(
        f"{where}: field `{path}` {expected}, but the spec has {got!r}. "
        f"Fix that field and run `raysweep validate` again; nothing was written."
    )


def _convert(value: Any, hint: Any, path: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, path, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, where)
    if origin is tuple:
        if not isinstance(value, list):
            _fail(where, path, "must be a list", value)
        return tuple(_convert(v, args[0], f"{path}[{i}]", where) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, path, "must be a mapping", value)
        return {str(k): _convert(v, args[1], f"{path}.{k}", where) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            _fail(where, path, "must be true or false", value)
        return value
    if hint is int:
        # YAML reads 1e6 as a string and 1.0e6 as a float: accept whole numbers written either way.
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number != int(number):
            _fail(where, path, "must be a whole number", value)
        return int(number)
    if hint is float:
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            _fail(where, path, "must be a number", value)
        return float(number)
    if hint is str:
        if not isinstance(value, str) or not value:
            _fail(where, path, "must be a non-empty string", value)
        return value
    raise TypeError(f"spec field type {hint} is not handled")  # a bug in this module, not the spec


_HIDDEN_FIELDS = {"source_file", "base_dir"}


def _build(cls: type, data: Any, path: str, where: str) -> Any:
    if not isinstance(data, dict):
        _fail(where, path or "(top level)", "must be a mapping of fields", data)
    if cls is ModelSpec and "preset" in data:  # the preset's dims, then the fields written out
        preset = data["preset"]
        if not isinstance(preset, str) or preset not in MODEL_PRESETS:
            _fail(where, f"{path}.preset", f"must be one of {', '.join(MODEL_PRESETS)}", preset)
        data = {**MODEL_PRESETS[preset], **data}
    if cls is PretrainSpec and isinstance(data.get("checkpoints"), dict):
        data = {**data, "checkpoints": _log_spaced(data["checkpoints"], data.get("tokens"),
                                                   f"{path}.checkpoints", where)}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - _HIDDEN_FIELDS
    unknown = sorted((key for key in data if key not in names), key=str)
    if unknown:
        prefix = f"{path}." if path else ""
        key = unknown[0]
        shown = key if isinstance(key, str) and key.isprintable() and key.strip() == key else repr(key)
        raise SpecError(
            f"{where}: unknown field `{prefix}{shown}`. Expected one of: "
            f"{', '.join(sorted(names))}. Check the spelling (see raysweep/spec.py for what each "
            f"field means); nothing was written."
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                prefix = f"{path}." if path else ""
                raise SpecError(
                    f"{where}: required field `{prefix}{f.name}` is missing. "
                    f"Add it (see raysweep/spec.py for what it means); nothing was written."
                )
            continue
        sub = f"{path}.{f.name}" if path else f.name
        kwargs[f.name] = _convert(data[f.name], hints[f.name], sub, where)
    return cls(**kwargs)


def _log_spaced(form: dict, budget: Any, path: str, where: str) -> list[int]:
    """`checkpoints: {first: N, count: K}` -> K D_p spaced evenly in log from N to the budget."""
    if set(form) != {"first", "count"}:
        _fail(where, path, "must be a list of D_p, or {first: N, count: K} (K log-spaced D_p from N "
              "to pretrain.tokens)", form)
    first = _convert(form["first"], int, f"{path}.first", where)
    count = _convert(form["count"], int, f"{path}.count", where)
    if budget is None:
        _fail(where, path.rsplit(".", 1)[0] + ".tokens", "must be set when checkpoints are "
              "log-spaced (it is the last one)", None)
    last = _convert(budget, int, path.rsplit(".", 1)[0] + ".tokens", where)
    if count < 2 or not 0 < first < last:
        _fail(where, path, f"must have count >= 2 and 0 < first < pretrain.tokens ({last})", form)
    return [round(first * (last / first) ** (i / (count - 1))) for i in range(count)]


def _read_yaml(path: Path, where: str, chain: tuple[str, ...] = ()) -> dict:
    """A spec file's mapping, with the files it `extends` merged underneath it."""
    if not path.is_file():
        if chain:
            raise SpecError(f"{chain[-1]}: field `extends`: {str(path)!r} is not a file. Give the "
                            f"path of a spec YAML file, relative to this one; nothing was written.")
        raise SpecError(f"{where}: spec file not found. Pass the path of a sweep spec YAML file, "
                        f"e.g. jobs/demo.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe: builds no Python objects
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SpecError(f"{where}: not valid YAML ({' '.join(str(err).split())}). "
                        f"Fix the syntax; nothing was written.") from None
    if not isinstance(data, dict):
        return data  # _build names what was expected
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        _fail(where, "extends", "must be the path of a spec file (relative to this one)", base)
    base_path = (path.parent / base).resolve()
    if str(base_path) in chain:
        _fail(where, "extends", "must not form a cycle of files extending each other", base)
    return _merge(_read_yaml(base_path, str(base_path), chain + (where,)), data)


def _merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`: mappings merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def _expand_env(value: str | None, field_name: str, where: str) -> str | None:
    """`${VAR}` in storage and tracking_uri: bucket names and server addresses come from the
    environment (the cluster's), so one spec runs anywhere and holds no secrets."""
    if value is None or "${" not in value:
        return value
    missing = [name for name in re.findall(r"\$\{(\w+)\}", value) if name not in os.environ]
    if missing:
        _fail(where, field_name, f"uses the environment variable {', '.join(missing)}, which is "
              f"not set; set it (on a cluster, cluster.yaml's head_start_ray_commands export it) "
              f"or write the value", value)
    return re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], value)


def _resolve_locations(spec: SweepSpec, base_dir: Path, where: str) -> SweepSpec:
    storage = _expand_env(spec.storage, "storage", where)
    if storage.startswith("file://"):  # a local folder as a URI: file:///abs/path
        path = urllib.parse.unquote(urllib.parse.urlparse(storage).path)
        if urllib.parse.urlparse(storage).netloc not in ("", "localhost") or not path:
            _fail(where, "storage", "must name a folder of this machine when it is a file:// URI "
                  "(file:///data/sweeps: three slashes, an absolute path)", spec.storage)
        storage = path
    if not is_remote(storage) and not os.path.isabs(storage):
        storage = str((base_dir / storage).resolve())
        if "/runtime_resources/working_dir_files/" in storage:
            # `ray job submit --working-dir .` runs the spec from Ray's temporary copy of the
            # folder: results written beside it would vanish with the Ray session.
            _fail(where, "storage", f"resolves to {storage}, inside Ray's temporary copy of the "
                  f"job's working dir, which disappears with the Ray session; for a submitted "
                  f"job give an absolute folder or a bucket (s3://...)", spec.storage)
    return dataclasses.replace(spec, storage=storage,
                               tracking_uri=_expand_env(spec.tracking_uri, "tracking_uri", where),
                               source_file=where, base_dir=str(base_dir.resolve()))


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a spec file. Raises SpecError with one clear paragraph."""
    path = Path(path)
    where = str(path)
    spec = _build(SweepSpec, _read_yaml(path, where), "", where)
    spec = _resolve_locations(spec, path.parent, where)
    validate(spec)
    return spec


def spec_from_dict(data: dict, where: str = "<spec>", base_dir: str | None = None) -> SweepSpec:
    """Build and validate a spec from a dict (tests, notebooks)."""
    spec = _resolve_locations(_build(SweepSpec, data, "", where), Path(base_dir or "."), where)
    validate(spec)
    return spec


def is_remote(storage: str) -> bool:
    """A bucket URI (s3://, gs://, ...) rather than a folder of this machine."""
    return "://" in storage and not storage.startswith("file://")


# --------------------------------------------------------------------------------------------------
# Semantic checks (cross-field). Data-dependent checks (file exists, task data large enough) live in
# raysweep.data.check_sources, called by `raysweep validate` and `raysweep run` after these.


def _check_tokenizer_sources(spec: SweepSpec, where: str) -> None:
    """What the tokenizer is trained on or copied from. `train_sources` and `path` belong to one
    kind each: with another they would be ignored, and the sweep would silently score in other
    units than the sweeps it is compared with. A saved folder's existence is checked here (no
    loading); raysweep.data.tokenizer loads it."""
    from raysweep.data.sources import SourceName

    tok = spec.tokenizer
    if tok.train_sources and tok.kind != "unigram":
        _fail(where, "tokenizer.train_sources", "is only used when tokenizer.kind is unigram",
              list(tok.train_sources))
    for i, source in enumerate(tok.train_sources):
        SourceName.parse(source, f"tokenizer.train_sources[{i}]", where)
    if tok.path is not None and tok.kind != "saved":
        _fail(where, "tokenizer.path", "is only read when tokenizer.kind is saved (add kind: saved "
              "to reuse that tokenizer)", tok.path)
    if tok.kind != "saved":
        return
    if not tok.path:
        _fail(where, "tokenizer.path", "must name a saved tokenizer folder when tokenizer.kind is "
              "saved", None)
    wanted = ("Give a saved tokenizer folder, such as another sweep's <storage>/<sweep>/tokenizer "
              "(saved when that sweep starts), relative to this spec file's folder; nothing was "
              "written.")
    if is_remote(tok.path):
        raise SpecError(f"{where}: field `tokenizer.path`: {tok.path!r} is a bucket URI, but a "
                        f"saved tokenizer is read from a local folder. Copy the folder to this "
                        f"machine, or train the same tokenizer in both sweeps with "
                        f"tokenizer.train_sources. {wanted}")
    if (spec.root / "tokenizer" / "tokenizer_config.json").is_file():
        return  # the sweep holds its own copy already (a resumed run, status): the source is done
    folder = tok.saved_folder(spec.base_dir)
    if not folder.is_dir():
        raise SpecError(f"{where}: field `tokenizer.path`: {str(folder)!r} is not a folder. {wanted}")
    if not (folder / "tokenizer_config.json").is_file():
        raise SpecError(f"{where}: field `tokenizer.path`: {str(folder)!r} holds no saved tokenizer "
                        f"(no tokenizer_config.json, which saving a tokenizer writes last). {wanted}")


def validate(spec: SweepSpec) -> None:
    where = spec.source_file or "<spec>"

    def positive(value: float, path: str) -> None:
        if not value > 0:
            _fail(where, path, "must be greater than zero", value)

    if not spec.name.replace("-", "").replace("_", "").isalnum():
        _fail(where, "name", "must use only letters, digits, '-' and '_'", spec.name)
    for name in ("storage", "tracking_uri"):
        location = getattr(spec, name) or ""
        if re.match(r"^\w[\w+.-]*://[^/@]*@", location):
            # A spec is committed, copied into MLflow and shown in logs: no secrets in it.
            _fail(where, name, "must not hold credentials (user:password@ in the URI); give them "
                  "by environment variable instead: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an "
                  "instance role for S3, MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD for "
                  "MLflow", re.sub(r"//[^/@]*@", "//***@", location))
    if is_remote(spec.storage) and not spec.tracking_uri:
        _fail(where, "tracking_uri", f"must be set when storage is a bucket ({spec.storage}): the "
              f"default SQLite file lives in a local storage folder. Point it at an MLflow "
              f"server, e.g. ${{MLFLOW_TRACKING_URI}} (cluster.yaml runs one on the head)", None)
    for name in ("d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "d_kv"):
        positive(getattr(spec.model, name), f"model.{name}")
    if spec.model.feed_forward not in ("gated-gelu", "relu"):
        _fail(where, "model.feed_forward", "must be gated-gelu or relu", spec.model.feed_forward)
    if spec.tokenizer.kind not in ("unigram", "byt5", "hub", "saved"):
        _fail(where, "tokenizer.kind", "must be one of unigram, byt5, hub, saved", spec.tokenizer.kind)
    if spec.tokenizer.kind == "hub" and not spec.tokenizer.hub_id:
        _fail(where, "tokenizer.hub_id", "must name a hub tokenizer when tokenizer.kind is hub", None)
    _check_tokenizer_sources(spec, where)
    positive(spec.tokenizer.vocab_size, "tokenizer.vocab_size")
    if not 0 <= spec.synthetic.relatedness <= 1:
        _fail(where, "synthetic.relatedness", "must be between 0 and 1", spec.synthetic.relatedness)
    for name in ("nouns", "verbs", "adjectives"):
        if getattr(spec.synthetic, name) < 2:
            _fail(where, f"synthetic.{name}", "must be at least 2", getattr(spec.synthetic, name))

    pre = spec.pretrain
    if not pre.mixture:
        _fail(where, "pretrain.mixture", "must list at least one source with a weight", [])
    for i, comp in enumerate(pre.mixture):
        positive(comp.weight, f"pretrain.mixture[{i}].weight")
    total = sum(c.weight for c in pre.mixture)
    if abs(total - 1.0) > 1e-6:
        _fail(where, "pretrain.mixture", f"must have weights that sum to 1 (they sum to {total:g})",
              [c.weight for c in pre.mixture])
    if not pre.checkpoints:
        _fail(where, "pretrain.checkpoints", "must list at least one D_p in tokens", [])
    for i, tokens in enumerate(pre.checkpoints):
        positive(tokens, f"pretrain.checkpoints[{i}]")
    if pre.tokens is not None:
        positive(pre.tokens, "pretrain.tokens")
        for i, tokens in enumerate(pre.checkpoints):
            if tokens > pre.tokens:
                _fail(where, f"pretrain.checkpoints[{i}]", f"is beyond the token budget "
                      f"pretrain.tokens ({pre.tokens:,}): pretraining stops there, so this "
                      f"checkpoint would never be published. Raise pretrain.tokens or drop it", tokens)
    for name in ("batch_size", "seq_len", "lr", "workers", "log_every", "recovery_every",
                 "recovery_keep"):
        positive(getattr(pre, name), f"pretrain.{name}")
    if pre.max_failures < 0:
        _fail(where, "pretrain.max_failures", "must be 0 or more", pre.max_failures)
    positive(pre.gradient_accumulation, "pretrain.gradient_accumulation")
    if pre.batch_size % (pre.workers * pre.gradient_accumulation):
        _fail(where, "pretrain.batch_size",
              f"must be divisible by pretrain.workers x pretrain.gradient_accumulation "
              f"({pre.workers} x {pre.gradient_accumulation}), so every micro-batch has the same size",
              pre.batch_size)
    if pre.zero_stage not in (0, 1, 2, 3):
        _fail(where, "pretrain.zero_stage", "must be 0, 1, 2 or 3", pre.zero_stage)
    if pre.optimizer not in ("adamw", "adafactor"):
        _fail(where, "pretrain.optimizer", "must be adamw or adafactor", pre.optimizer)
    if pre.optimizer == "adafactor" and pre.zero_stage > 0:
        # ZeRO hands the optimizer flat 1-D partitions of the weights (DeepSpeed's
        # stage_1_and_2.py / stage3.py), so Adafactor could not factor its second moments: it would
        # silently keep Adam-sized states and take different steps than the paper's optimizer.
        _fail(where, "pretrain.zero_stage", "must be 0 with pretrain.optimizer adafactor: ZeRO "
              "stages 1-3 flatten the weights the optimizer sees, so Adafactor would lose its "
              "factored second moments (use zero_stage 0, or optimizer adamw with ZeRO)",
              pre.zero_stage)
    if pre.gradient_clipping < 0:
        _fail(where, "pretrain.gradient_clipping", "must be 0 (off) or positive", pre.gradient_clipping)
    if pre.precision not in ("auto", "bf16", "fp32"):
        _fail(where, "pretrain.precision", "must be auto, bf16 or fp32", pre.precision)
    if pre.precision == "bf16" and not spec.resources.use_gpu:
        _fail(where, "pretrain.precision", "can be bf16 only with resources.use_gpu: true (CPU "
              "pretraining runs in fp32; use auto or fp32)", pre.precision)
    if not 0 < pre.noise_density < 1:
        _fail(where, "pretrain.noise_density", "must be between 0 and 1", pre.noise_density)
    if pre.mean_span_length < 1:
        _fail(where, "pretrain.mean_span_length", "must be at least 1", pre.mean_span_length)

    if not spec.tasks:
        _fail(where, "tasks", "must list at least one task", [])
    names = [t.name for t in spec.tasks]
    if len(set(names)) != len(names):
        _fail(where, "tasks", "must have distinct task names", names)
    for i, task in enumerate(spec.tasks):
        if not task.finetune_tokens:
            _fail(where, f"tasks[{i}].finetune_tokens", "must list at least one D_f in tokens", [])
        for j, tokens in enumerate(task.finetune_tokens):
            positive(tokens, f"tasks[{i}].finetune_tokens[{j}]")
        if not task.lrs:
            _fail(where, f"tasks[{i}].lrs", "must list at least one learning rate", [])
        for j, lr in enumerate(task.lrs):
            positive(lr, f"tasks[{i}].lrs[{j}]")
        for name in ("steps", "batch_size", "max_length", "dev_examples", "test_examples",
                     "train_examples"):
            positive(getattr(task, name), f"tasks[{i}].{name}")
        for name in ("eval_every", "patience"):
            if getattr(task, name) < 0:
                _fail(where, f"tasks[{i}].{name}", "must be 0 (off) or more", getattr(task, name))
        if isinstance(task.seeds, bool) or not isinstance(task.seeds, int) or task.seeds < 1:
            _fail(where, f"tasks[{i}].seeds", "must be a whole number of finetune replicates, 1 "
                  "or more", task.seeds)
        if task.test_examples < 2:
            _fail(where, f"tasks[{i}].test_examples", "must be at least 2: each metric's standard "
                  "error is measured on the test set", task.test_examples)
        if task.patience and not task.eval_every:
            _fail(where, f"tasks[{i}].patience", "needs tasks[].eval_every (steps between dev "
                  "checks) to stop early", task.patience)

    if spec.fit.lr_choice not in LR_CHOICES:
        _fail(where, "fit.lr_choice", f"must be one of {', '.join(LR_CHOICES)}", spec.fit.lr_choice)
    unknown = sorted(set(spec.fit.metrics) - set(METRICS))
    if unknown:
        _fail(where, "fit.metrics", f"must only name metrics from {', '.join(METRICS)}", unknown)
    for metric, delta in spec.fit.huber_delta.items():
        if metric not in METRICS:
            _fail(where, f"fit.huber_delta.{metric}", f"must be one of {', '.join(METRICS)}", metric)
        positive(delta, f"fit.huber_delta.{metric}")
    if spec.fit.min_points < 2:
        _fail(where, "fit.min_points", "must be at least 2", spec.fit.min_points)
    if spec.fit.target_tokens is not None:
        positive(spec.fit.target_tokens, "fit.target_tokens")
    positive(spec.fit.bootstrap_resamples, "fit.bootstrap_resamples")
    if not 0 < spec.fit.interval_level < 1:
        _fail(where, "fit.interval_level", "must be between 0 and 1", spec.fit.interval_level)
    for metric, effect in spec.fit.min_effect.items():
        if metric not in METRICS:
            _fail(where, f"fit.min_effect.{metric}", f"must be one of {', '.join(METRICS)}", metric)
        positive(effect, f"fit.min_effect.{metric}")
    for metric, score in spec.fit.target_score.items():
        if metric not in METRICS:
            _fail(where, f"fit.target_score.{metric}", f"must be one of {', '.join(METRICS)}", metric)
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not score > 0:
            _fail(where, f"fit.target_score.{metric}", "must be a positive number", score)
    if spec.fit.backtest_points < 2:
        _fail(where, "fit.backtest_points", "must be at least 2", spec.fit.backtest_points)

    res = spec.resources
    for name in ("local_cpus", "max_concurrent_trials"):
        positive(getattr(res, name), f"resources.{name}")
    for group in ("pretrain_resources", "trial_resources", "coordinator_resources"):
        for name, amount in getattr(res, group).items():
            positive(amount, f"resources.{group}.{name}")
    if res.trial_retries < 0:
        _fail(where, "resources.trial_retries", "must be 0 or more", res.trial_retries)
    if res.peak_tflops is not None:
        positive(res.peak_tflops, "resources.peak_tflops")
    if res.pretrain_worker_cpus < 0 or res.trial_cpus < 0:
        _fail(where, "resources", "must not request negative CPUs",
              (res.pretrain_worker_cpus, res.trial_cpus))
    if spec.evaluation.comet_gpus < 0:
        _fail(where, "evaluation.comet_gpus", "must be 0 or more", spec.evaluation.comet_gpus)
    if spec.evaluation.num_beams < 1:
        _fail(where, "evaluation.num_beams", "must be at least 1", spec.evaluation.num_beams)
