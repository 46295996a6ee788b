"""A series of checkpoints made elsewhere as a checkpoint source (raysweep.checkpoint_source).

Importing a series plays pretraining's part. Each checkpoint, in D_p order, is loaded from its
safetensors weights (a pickle is never read), checked against the series' architecture, and
published into the sweep's own checkpoints (raysweep.checkpoints.publish: weights, then the
manifest, last), so that everything after it (the watcher, the trials, exactly-once keys, the
laws) is what it is for a sweep that pretrains, and a rerun fetches nothing already published.
The first checkpoint's architecture is kept in the sweep's folder (series/config.json): the
no-pretraining baseline is that architecture freshly initialised. The model's own tokenizer is
the sweep's.
"""

from __future__ import annotations

import logging

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from raysweep import checkpoints
from raysweep.data.mixture import mixture_manifest, mixture_text
from raysweep.data.tokenizer import load_tokenizer, tokenizer_dir
from raysweep.plan import count_trials, tell_watcher
from raysweep.series.attach import Arrivals, clear_stop, request_stop, stop_requested
from raysweep.series.checks import (
    check_checkpoint,
    check_series,
    downloads,
    load_checkpoint,
    load_series_tokenizer,
    location,
)
from raysweep.spec import SweepSpec
from raysweep.tracking import Tracker

logger = logging.getLogger(__name__)

ARCHITECTURE = "series/config.json"
"""The series' architecture (the first checkpoint's config), in the sweep's folder."""


class SeriesSource:
    def __init__(self, spec: SweepSpec):
        self.spec, self.series = spec, spec.series

    @property
    def stage(self) -> str:
        return f"importing the series ({self.series.hub or self.series.folder})"

    def plan_lines(self) -> list[str]:
        series = self.series
        where = f"hub model {series.hub}" if series.hub else f"folder {series.folder}"
        return [f"  checkpoints made elsewhere: {where}, trained on "
                f"{mixture_text(self.spec.pretrain.mixture)}",
                "  checkpoints (D_p, tokens): "
                + ", ".join(f"{p.tokens:,} "
                            f"({series.label(p).rsplit('@', 1)[-1].rsplit('/', 1)[-1]})"
                            for p in series.points())
                + " + the same architecture freshly initialised (D_p = 0); the model's own "
                  "tokenizer"]

    def settings(self) -> dict[str, str]:
        """Where the checkpoints come from, as the sweep run's MLflow params."""
        where = f"hub {self.series.hub}" if self.series.hub else f"folder {self.series.folder}"
        return {"model": f"series: {where}, {len(self.series.points())} checkpoints",
                "tokenizer": "the series' own"}

    def check(self, offline: bool):
        """The checkpoints (they exist, hold safetensors, share one architecture) and the model's
        tokenizer; offline (validate), a hub or bucket series is not read (tokenizer None). The
        mixture only says what the checkpoints were trained on: it is not read."""
        if offline and (self.series.hub or location(self.spec).remote):
            return None
        check_series(self.spec, only_complete=self.series.attach)
        saved = tokenizer_dir(self.spec)
        if (saved / "tokenizer_config.json").exists():
            return load_tokenizer(saved)
        return load_series_tokenizer(self.spec)

    def prepare(self) -> None:
        """The series' architecture in the sweep's folder (the baseline is built from it; an
        attached series' first checkpoint brings it if none is there yet), and a new run of an
        attached sweep follows the trainer again."""
        architecture = check_series(self.spec, only_complete=self.series.attach)
        if architecture is not None:
            self.spec.folder.write_json(ARCHITECTURE, architecture)
        if self.series.attach:
            clear_stop(self.spec)

    def produce(self, run_id: str, echo) -> None:
        """Publish each checkpoint not yet published, in D_p order, logging each publication to
        the pretraining run as pretraining does. An attached series' checkpoints are waited for,
        and checked as they arrive; a stop request ends the wait."""
        spec = self.spec
        echo(f"[raysweep] importing {len(spec.published_tokens())} checkpoints of "
             f"{self.series.hub or self.series.folder} (no pretraining)")
        tracker, about = Tracker.for_spec(spec), mixture_manifest(spec)
        done = checkpoints.published(spec, verify_weights=False)
        arrivals = Arrivals(spec) if self.series.attach else None
        reference = spec.folder.read_json(ARCHITECTURE)
        for index, point in enumerate(self.series.points()):
            if point.tokens in done:
                continue
            if arrivals:
                if not arrivals.wait(point):
                    logger.info("stop requested: no checkpoint after D_p = %s is taken",
                                f"{point.tokens:,}")
                    return
                reference = check_checkpoint(spec, index, point, reference, after=(
                    "it was not imported; the sweep finishes the checkpoints before it"))
                if spec.folder.read_json(ARCHITECTURE) is None:  # the baseline can start now
                    spec.folder.write_json(ARCHITECTURE, reference)
            label = self.series.label(point)
            logger.info("importing checkpoint %s as D_p = %s", label, f"{point.tokens:,}")
            model = load_checkpoint(spec, point)
            checkpoints.publish(spec, model, point.tokens, index + 1, {"source": label, **about})
            tracker.log_metrics(run_id, {"published_tokens": point.tokens,
                                         "tokens_seen": point.tokens}, step=index + 1)
            tell_watcher(spec)
            if self.series.folder:  # a bucket checkpoint's copy on this node: it is published
                location(spec).drop_local(point.folder, downloads(spec))
            del model

    def baseline_ready(self) -> bool:
        """Not before the series' architecture is known (an attached series' first checkpoint)."""
        return self.spec.folder.read_json(ARCHITECTURE) is not None

    def baseline_model(self, tokenizer):
        """The series' architecture, freshly initialised (the tokenizer is the model's own)."""
        config = dict(self.spec.folder.read_json(ARCHITECTURE))
        config = AutoConfig.for_model(config.pop("model_type"), **config)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        return auto.from_config(config)

    def final_checkpoints(self) -> list[int]:
        """All of the series, or for an attached series that was stopped, those in by then."""
        if self.series.attach and stop_requested(self.spec):
            return sorted(checkpoints.published(self.spec, verify_weights=False))
        return self.spec.published_tokens()

    def final_trials(self) -> int:
        return count_trials(self.spec, self.final_checkpoints())

    def request_stop(self) -> bool:
        """Only an attached series takes a stop: the others have every checkpoint already."""
        if self.series.attach:
            request_stop(self.spec)
        return self.series.attach
