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
  __init__.py     SweepSpec: the sections together, the plan, and the rules across sections

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
from raysweep.spec.tasks import LR_CHOICES, METRICS, EvaluationSpec, FitSpec, TaskSpec
from raysweep.storage import SweepFolder

__all__ = ["LR_CHOICES", "METRICS", "MODEL_PRESETS", "SAVED_TOKENIZER_HINT", "EvaluationSpec",
           "Fields", "FitSpec", "MixtureComponent", "ModelSpec", "PretrainSpec", "ResourceSpec",
           "SeriesCheckpoint", "SeriesSpec", "SourceName", "SpecError", "SweepSpec",
           "SyntheticSpec", "TaskSpec", "TokenizerSpec", "fail"]


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
    source_file: str | None = None
    """Set by `load_spec`: the YAML file this spec came from (not a YAML field)."""
    base_dir: str | None = None
    """Set by `load_spec`: the folder relative data paths are taken from (not a YAML field)."""

    # ---- derived paths -----------------------------------------------------------------------
    @property
    def folder(self) -> SweepFolder:
        """The sweep's shared folder (raysweep.storage): what every stage reads and writes."""
        return SweepFolder(self.storage, self.name)

    @property
    def root(self) -> Path:
        """This node's folder for the sweep: the storage folder itself, or for a bucket storage
        a local cache of it."""
        return self.folder.root

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    # ---- the plan ------------------------------------------------------------------------------
    @property
    def checkpoint_source(self) -> str:
        """Where the checkpoints come from: `pretraining`, or a `series` made elsewhere
        (raysweep.checkpoint_source builds the source of that name)."""
        return "series" if self.series else "pretraining"

    def published_tokens(self) -> list[int]:
        """D_p of every checkpoint: pretraining's schedule, or the series'."""
        if self.series:
            return [point.tokens for point in self.series.points()]
        return self.pretrain.published_tokens()

    def checkpoint_tokens(self) -> list[int]:
        """D_p of every finetuned starting point, the no-pretraining baseline (0) first."""
        return [0] + self.published_tokens()

    def num_trials(self) -> int:
        points = len(self.checkpoint_tokens())
        return sum(points * len(t.finetune_tokens) * len(t.lrs) * t.seeds for t in self.tasks)

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
        if self.series:
            self._check_series(fields)
        else:
            for section in ("model", "tokenizer", "pretrain"):
                getattr(self, section).check(fields.at(section))
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

    def _check_series(self, fields: Fields) -> None:
        """A series replaces pretraining: its checkpoints bring their architecture and tokenizer,
        so the sections that would describe them must be left out."""
        self.series.check(fields.at("series"))
        pre = self.pretrain
        replaced = {"model": (self.model != ModelSpec(), "the series' own architecture is used"),
                    "tokenizer": (self.tokenizer != TokenizerSpec(),
                                  "the model's own tokenizer is used"),
                    "pretrain.checkpoints": (bool(pre.checkpoints or pre.tokens),
                                             "the series' checkpoints replace pretraining's; "
                                             "`pretrain` gives only the `mixture` they were "
                                             "trained on, for the alignment score")}
        for name, (given, why) in replaced.items():
            if given:
                fields.fail(name, f"must be left out with a series: {why}", "given")
        self.pretrain.check_mixture(fields.at("pretrain"))
