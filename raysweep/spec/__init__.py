"""The sweep spec: an immutable `SweepSpec` of sections, every field documented where it is
declared, and each section checking its own fields (`check`); the rules that span sections are
`SweepSpec.check`'s. A bad spec costs the user one clear paragraph and nothing else (`SpecError`,
exit status 2 on the command line), before anything is written or started. The spec is data: it
reads no disk and formats nothing for MLflow (raysweep.tracking.params does).

Where each section lives (this package re-exports them all: `from raysweep.spec import X`):
  errors.py       SpecError, fail, Fields (naming a field in full), SourceName
  model.py        ModelSpec, MODEL_PRESETS, TokenizerSpec
  pretraining.py  SyntheticSpec, MixtureComponent, PretrainSpec, SeriesCheckpoint, SeriesSpec
  tasks.py        TaskSpec, EvaluationSpec, FitSpec, METRICS, LR_CHOICES
  resources.py    ResourceSpec
  study.py        CandidateSpec, StopSpec (a study: candidate pretraining data in one job)
  __init__.py     SweepSpec: the sections together, the plan, and the rules across sections

A study is a SweepSpec with `candidates`: everything but the pretraining data is shared, and
`candidate_spec(name)` derives each candidate's own spec (a plain sweep's, with its folder under
the study's), which is what pretrains, publishes and is finetuned.

Reading a YAML file into a spec (`extends`, `${VAR}`, strict fields) is raysweep.spec_loader's;
the checks that need the data, the tokenizer or the machine are raysweep.preflight's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from raysweep.spec.errors import Fields, SourceName, SpecError, fail
from raysweep.spec.model import MODEL_PRESETS, SAVED_TOKENIZER_HINT, ModelSpec, TokenizerSpec
from raysweep.spec.pretraining import (
    MixtureComponent,
    PretrainSpec,
    SeriesCheckpoint,
    SeriesSpec,
    SyntheticSpec,
)
from raysweep.spec.resources import ResourceSpec
from raysweep.spec.study import CandidateSpec, StopSpec
from raysweep.spec.tasks import LR_CHOICES, METRICS, EvaluationSpec, FitSpec, TaskSpec
from raysweep.storage import SweepFolder

__all__ = ["LR_CHOICES", "METRICS", "MODEL_PRESETS", "SAVED_TOKENIZER_HINT", "CandidateSpec",
           "EvaluationSpec", "Fields", "FitSpec", "MixtureComponent", "ModelSpec", "PretrainSpec",
           "ResourceSpec", "SeriesCheckpoint", "SeriesSpec", "SourceName", "SpecError",
           "StopSpec", "SweepSpec", "SyntheticSpec", "TaskSpec", "TokenizerSpec", "fail"]


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
    series: SeriesSpec | None = None
    """Checkpoints made elsewhere, in place of pretraining (then `pretrain` holds only the
    `mixture` they were trained on, for the alignment score)."""
    tasks: tuple[TaskSpec, ...] = ()
    evaluation: EvaluationSpec = EvaluationSpec()
    fit: FitSpec = FitSpec()
    resources: ResourceSpec = ResourceSpec()
    candidates: tuple[CandidateSpec, ...] = ()
    """A study (raysweep.spec.study): two or more candidates, each a `name` and its pretraining
    `mixture` (and optionally its own budget `tokens`, or a `series` made elsewhere), compared on
    everything else of this spec, shared by all. `pretrain` then holds only the shared settings
    (its `mixture` is empty) and `series` is left out. Empty (default): a plain sweep."""
    stop: StopSpec | None = None
    """A study's stopping policy: stop pretraining a candidate once the leader beats it with
    enough confidence. Default: off, every candidate runs its whole schedule."""
    source_file: str | None = None
    """Set by `load_spec`: the YAML file this spec came from (not a YAML field)."""
    base_dir: str | None = None
    """Set by `load_spec`: the folder relative data paths are taken from (not a YAML field)."""
    candidate: str = ""
    """Set by `candidate_spec` (not a YAML field): the candidate this spec of a study is for; ""
    for a plain sweep and for a study itself."""
    study_sources: tuple[tuple[str, MixtureComponent], ...] = ()
    """Set by `candidate_spec` (not a YAML field): the study's `tokenizer_sources()`, so that a
    candidate's spec trains the study's one tokenizer, never one of its own mixture alone."""

    # ---- derived paths -----------------------------------------------------------------------
    @property
    def study_folder(self) -> SweepFolder:
        """What a whole study shares: MLflow's SQLite file, the tokenizer, the watcher's state
        (`<storage>/<name>/`). A plain sweep's is its folder."""
        return SweepFolder(self.storage, self.name)

    @property
    def folder(self) -> SweepFolder:
        """The sweep's shared folder (raysweep.storage): what every stage reads and writes. A
        study's candidate spec has its own under the study's, `<name>/candidates/<candidate>/`:
        its checkpoints, pretraining's recovery state and Ray Train's storage."""
        if self.candidate:
            return SweepFolder(self.storage, f"{self.name}/candidates/{self.candidate}")
        return self.study_folder

    @property
    def root(self) -> Path:
        """This node's folder for the sweep: the storage folder itself, or for a bucket storage
        a local cache of it."""
        return self.folder.root

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        # The study's folder: one MLflow store for a study, whose candidates' runs are compared.
        return f"sqlite:///{(self.study_folder.root / 'mlflow.db').resolve()}"

    # ---- the plan ------------------------------------------------------------------------------
    @property
    def checkpoint_source(self) -> str:
        """Where the checkpoints come from: `pretraining`, or a `series` made elsewhere
        (raysweep.checkpoint_source builds the source of that name); a study's candidates are all
        of one kind."""
        made_elsewhere = self.series is not None or any(c.series for c in self.candidates)
        return "series" if made_elsewhere else "pretraining"

    def published_tokens(self) -> list[int]:
        """D_p of every checkpoint: pretraining's schedule, or the series'. A study's: every D_p
        that some candidate publishes (each candidate's are its spec's: candidate_spec)."""
        if self.candidates:
            return sorted({t for spec in self.candidate_specs() for t in spec.published_tokens()})
        if self.series:
            return [point.tokens for point in self.series.points()]
        return self.pretrain.published_tokens()

    def checkpoint_tokens(self) -> list[int]:
        """D_p of every finetuned starting point, the no-pretraining baseline (0) first."""
        return [0] + self.published_tokens()

    def trials_per_point(self) -> int:
        """The trials every starting point gets: finetune sizes x learning rates x finetune
        seeds, summed over the tasks."""
        return sum(len(t.finetune_tokens) * len(t.lrs) * t.seeds for t in self.tasks)

    def num_trials(self) -> int:
        """Every trial of the plan. A study's no-pretraining baseline is shared by its
        candidates (it has no pretraining data), so it is counted once, then each candidate's
        checkpoints."""
        if self.candidates:
            points = 1 + sum(len(spec.published_tokens()) for spec in self.candidate_specs())
        else:
            points = len(self.checkpoint_tokens())
        return points * self.trials_per_point()

    # ---- a study's candidates --------------------------------------------------------------------
    @property
    def is_study(self) -> bool:
        """Whether this spec is a study (it has candidates); a candidate's own spec is not."""
        return bool(self.candidates)

    def candidate_spec(self, name: str) -> SweepSpec:
        """The study's spec for one candidate: a plain sweep's, with the candidate's mixture and
        budget (the study's schedule cut at it) or series, and its own `folder` under the
        study's; the rest, the tracking store and the tokenizer included, is the study's.
        ValueError for a name that is not a candidate's."""
        found = [c for c in self.candidates if c.name == name]
        if not found:
            raise ValueError(f"{name!r} is not a candidate of study {self.name!r} (its "
                             f"candidates: {', '.join(c.name for c in self.candidates) or 'none'})")
        candidate, pre = found[0], self.pretrain
        tokens = candidate.tokens or pre.tokens
        # A smaller budget cuts the schedule: checkpoints beyond it would never be reached (and
        # PretrainSpec.check refuses them); the budget itself is published last, as in a sweep.
        checkpoints = tuple(t for t in pre.checkpoints if tokens is None or t <= tokens)
        pretrain = dataclasses.replace(pre, mixture=candidate.mixture, tokens=tokens,
                                       checkpoints=checkpoints)
        return dataclasses.replace(self, candidate=name, candidates=(), stop=None,
                                   pretrain=pretrain, series=candidate.series,
                                   study_sources=tuple(self.tokenizer_sources()))

    def candidate_specs(self) -> list[SweepSpec]:
        """Each candidate's spec (candidate_spec), in the study's order; none for a plain sweep."""
        return [self.candidate_spec(c.name) for c in self.candidates]

    def tokenizer_sources(self) -> list[tuple[str, MixtureComponent]]:
        """The pretraining sources a `unigram` tokenizer trains on when `tokenizer.train_sources`
        is empty (the tasks' training sides come on top: raysweep.data.tokenizer), each with the
        field that names it in errors. A sweep's mixture; a study's one tokenizer, shared by its
        candidates, trains on every candidate's mixture, each source once (a source that two
        candidates share would otherwise weigh double); a candidate's spec on the study's."""
        if self.study_sources:
            return list(self.study_sources)
        if not self.candidates:
            return [(f"pretrain.mixture[{i}].source", component)
                    for i, component in enumerate(self.pretrain.mixture)]
        found: dict[tuple[str, str | None], tuple[str, MixtureComponent]] = {}
        for i, candidate in enumerate(self.candidates):
            for j, component in enumerate(candidate.mixture):
                found.setdefault((component.source, component.language),
                                 (f"candidates[{i}].mixture[{j}].source", component))
        return list(found.values())

    # ---- what the sweep ran with, for its MLflow run (its params: raysweep.tracking.params) -----
    def as_dict(self) -> dict:
        """Every field as plain data, as resolved: `extends` merged, the model preset's dims
        written out, `${VAR}` taken, paths absolute. A spec built from several files logs what
        it ran with, not just its top file."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, for YAML

    # ---- checks: each section checks its own fields; the rules across sections are here ----------
    def check(self) -> None:
        """Raise SpecError (one paragraph naming the field) if this spec cannot be run. Checks
        that read the disk or the data (a saved tokenizer's folder, files, sizes, memory) are
        raysweep.preflight's, after these."""
        fields = Fields(self.source_file or "<spec>")
        if not self.name.replace("-", "").replace("_", "").isalnum():
            fields.fail("name", "must use only letters, digits, '-' and '_'", self.name)
        for name in ("storage", "tracking_uri"):
            location = getattr(self, name) or ""
            if re.match(r"^\w[\w+.-]*://[^/@]*@", location):
                # A spec is committed, copied into MLflow and shown in logs: no secrets in it.
                fields.fail(name, "must not hold credentials (user:password@ in the URI); give "
                            "them by environment variable instead: AWS_ACCESS_KEY_ID/"
                            "AWS_SECRET_ACCESS_KEY or an instance role for S3, "
                            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD for MLflow",
                            re.sub(r"//[^/@]*@", "//***@", location))
        if self.folder.remote and not self.tracking_uri:
            fields.fail("tracking_uri", f"must be set when storage is a bucket ({self.storage}): "
                        f"the default SQLite file lives in a local storage folder. Point it at an "
                        f"MLflow server, e.g. ${{MLFLOW_TRACKING_URI}} (cluster.yaml runs one on "
                        f"the head)", None)
        if self.candidates or self.stop:
            self._check_study(fields)
        if self.checkpoint_source == "series":
            self._check_series(fields)
        else:
            self._check_pretraining(fields)
        for section in ("synthetic", "evaluation", "fit", "resources"):
            getattr(self, section).check(fields.at(section))
        if not self.tasks:
            fields.fail("tasks", "must list at least one task", [])
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            fields.fail("tasks", "must have distinct task names", names)
        for i, task in enumerate(self.tasks):
            task.check(fields.at(f"tasks[{i}]"))
        if self.pretrain.precision == "bf16" and not self.resources.use_gpu:
            fields.fail("pretrain.precision", "can be bf16 only with resources.use_gpu: true (CPU "
                        "pretraining runs in fp32; use auto or fp32)", self.pretrain.precision)
        if self.candidates:
            self._check_candidate_plans(fields)

    def _check_pretraining(self, fields: Fields) -> None:
        """The sections that say how checkpoints are pretrained here. A study's `pretrain` holds
        only the shared settings: they are checked with its first candidate's mixture (which the
        candidate has checked already)."""
        pretrain = self.pretrain
        if self.candidates:
            pretrain = dataclasses.replace(pretrain, mixture=self.candidates[0].mixture)
        self.model.check(fields.at("model"))
        self.tokenizer.check(fields.at("tokenizer"))
        pretrain.check(fields.at("pretrain"))

    def _check_series(self, fields: Fields) -> None:
        """A series replaces pretraining: its checkpoints bring their architecture and tokenizer,
        so the sections that would describe them must be left out. (A study's series are its
        candidates', each checked by its candidate, as is the mixture each was trained on.)"""
        if self.series:
            self.series.check(fields.at("series"))
        pre = self.pretrain
        checkpoints = "the series' checkpoints replace pretraining's" + (
            "" if self.candidates else "; `pretrain` gives only the `mixture` they were trained "
            "on, for the alignment score")
        replaced = {"model": (self.model != ModelSpec(), "the series' own architecture is used"),
                    "tokenizer": (self.tokenizer != TokenizerSpec(),
                                  "the model's own tokenizer is used"),
                    "pretrain.checkpoints": (bool(pre.checkpoints or pre.tokens), checkpoints)}
        for name, (given, why) in replaced.items():
            if given:
                fields.fail(name, f"must be left out with a series: {why}", "given")
        if not self.candidates:
            self.pretrain.check_mixture(fields.at("pretrain"))

    def _check_study(self, fields: Fields) -> None:
        """A study's shape: two or more candidates with distinct names, each checking its own
        fields, all pretrained here or all series; no candidate's part at the top level."""
        if not self.candidates:
            fields.fail("stop", "is a study's stopping policy: it needs two or more `candidates` "
                        "(a plain sweep runs its whole schedule)", "given")
        if len(self.candidates) < 2:
            fields.fail("candidates", "must list two or more candidates: a study compares "
                        "pretraining data (for one mixture, run a sweep: pretrain.mixture)",
                        [c.name for c in self.candidates])
        first: dict[str, int] = {}
        for i, candidate in enumerate(self.candidates):
            candidate.check(fields.at(f"candidates[{i}]"))
            j = first.setdefault(candidate.name.casefold(), i)
            if j != i:
                fields.fail(f"candidates[{i}].name", f"must differ from every other candidate's "
                            f"name (candidates[{j}].name is {self.candidates[j].name!r}; compared "
                            f"ignoring case, since each names a folder and some file systems "
                            f"ignore case)", candidate.name)
        if self.series is not None:
            fields.fail("series", "must be left out in a study: give each candidate its own, "
                        "as candidates[i].series", "given")
        if self.pretrain.mixture:
            fields.fail("pretrain.mixture", "must be empty in a study: each candidate gives its "
                        "own (candidates[i].mixture). A study that extends a sweep's spec clears "
                        "the mixture it inherits with `pretrain: {mixture: []}`",
                        [c.source for c in self.pretrain.mixture])
        series = [c.series is not None for c in self.candidates]
        if any(series) and not all(series):
            i = series.index(not series[0])
            fields.fail(f"candidates[{i}].series", f"must be given for every candidate or for "
                        f"none (candidates[0] {'has' if series[0] else 'has none'}): a study "
                        f"compares candidates on one model and one tokenizer; a series brings its "
                        f"own, pretraining uses the study's", "given" if series[i] else None)

    def _check_candidate_plans(self, fields: Fields) -> None:
        """Each candidate's budget is within the study's schedule and gives the checkpoints its
        law (fit.min_points) and the stopping policy (stop.after) need; the decision metric is
        one the study fits."""
        stop = self.stop
        if stop is not None:
            stop.check(fields.at("stop"))
            if stop.metric not in self.fit.metrics:
                fields.fail("stop.metric", f"must be one of the metrics the study fits "
                            f"(fit.metrics: {', '.join(self.fit.metrics)}): the decision compares "
                            f"the candidates' laws of it", stop.metric)
            if not self.fit.target_tokens:
                fields.fail("fit.target_tokens", "must be set with `stop`: a candidate is "
                            "stopped when it is beaten at the D_p you mean to pretrain on, read "
                            "from each candidate's law (for example 1000000)", None)
        budget = self.pretrain.tokens or max(self.pretrain.checkpoints, default=0)
        source = "pretrain.tokens" if self.pretrain.tokens else "the last of pretrain.checkpoints"
        need = max(self.fit.min_points, stop.after if stop else 0)
        why = f"fit.min_points ({self.fit.min_points}) for its law" + (
            f", stop.after ({stop.after}) before any candidate is stopped" if stop else "")
        for i, candidate in enumerate(self.candidates):
            if candidate.tokens is not None and candidate.tokens > budget:
                fields.fail(f"candidates[{i}].tokens", f"must be at most the study's budget, "
                            f"{budget:,} tokens ({source}): a candidate's checkpoints are the "
                            f"study's schedule up to its own budget (lower it, or raise "
                            f"pretrain.tokens)", candidate.tokens)
            points = self.candidate_spec(candidate.name).published_tokens()
            if len(points) < need:
                field, value = ((f"candidates[{i}].tokens", candidate.tokens) if candidate.tokens
                                else (f"candidates[{i}].series", len(points)) if candidate.series
                                else ("pretrain.checkpoints", list(self.pretrain.checkpoints)))
                fields.fail(field, f"must give candidate {candidate.name!r} at least {need} "
                            f"checkpoints ({why}), not {len(points)} "
                            f"({', '.join(f'{t:,}' for t in points)})", value)
