"""The tag schema: every `raysweep.*` tag name a run carries, one constant each, with what it holds
(the README's table lists what each run holds). Runs are found by these tags, so a name written
anywhere else would be a run nobody finds."""

from __future__ import annotations

from raysweep.plan import TrialKey
from raysweep.text import tokens

KIND = "raysweep.kind"
"""What a run is: sweep | pretrain | laws | trial, and in a study candidate (a candidate's
pretraining, a child of the study's pretrain run) (the runs are found by it)."""
KINDS = ("sweep", "pretrain", "laws", "trial", "candidate")
TRIAL_KEY = "raysweep.trial_key"
"""The trial key string, e.g. en-de/dp=1024/df=4000/lr=0.001/seed=0 (trial runs)."""
KEY_FIELD = "raysweep.{}"
"""One field of the trial key: raysweep.task, .d_p, .d_f, .lr, .seed, and in a study .candidate
(trial runs)."""
CANDIDATE = "raysweep.candidate"
"""The study candidate a run belongs to (a study's trial and pretrain runs; not the shared
baseline's trials)."""
FAILURE = "raysweep.failure"
"""Why a trial failed (failed trial runs)."""
ATTEMPTS = "raysweep.attempts"
"""How many times the trial has started (a retry reuses the run)."""
PREVIOUS_FAILURE = "raysweep.previous_failure"
"""Why the attempt before a retry failed."""
WORKER = "raysweep.worker"
"""host:pid of the process running the trial's latest attempt (which node ran it; what a fault
audit matches a killed process against)."""
BEST_LR = "raysweep.best_lr"
"""true on the trial runs of the lr the laws use (chosen on the dev set), false on the others."""
COMET_SCORER = "raysweep.comet_scorer"
"""Which node's COMET scorer actor scored the trial."""
SIGNATURE = "raysweep.{}_signature"
"""sacrebleu's signature of a trial's BLEU or chrF."""
VERDICT = "verdict.{metric}.{task}.df_{d_f}"
"""The verdict of one law, on the laws run: the metric first, where MLflow's tag view cuts."""
VERDICT_PREFIX = "verdict."
REJECTED_CHECKPOINT = "raysweep.rejected_checkpoint.{}"
"""Why a checkpoint folder was skipped as unusable, on the sweep run."""
REJECTED_PREFIX = "raysweep.rejected_checkpoint."
# MLflow 3's UI opens an experiment without this tag on its GenAI (traces) pages; a sweep is
# model training: its runs table is what users look for.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def trial_tags(key: TrialKey) -> dict[str, str]:
    """The tags a trial run is found by: its kind, its key, and each field of the key (the
    candidate only in a study: a plain sweep's runs carry the tags they always have)."""
    fields = [("task", key.task), ("d_p", str(key.d_p)), ("d_f", str(key.d_f)),
              ("lr", f"{key.lr:g}"), ("seed", str(key.seed))]
    if key.candidate:
        fields.append(("candidate", key.candidate))
    return {KIND: "trial", TRIAL_KEY: str(key),
            **{KEY_FIELD.format(name): value for name, value in fields}}


def trial_run_name(key: TrialKey) -> str:
    """What MLflow's runs list shows of a trial, what varies most first, as it cuts names at
    about 13 characters: "df16k dp655k s1 lr3e-4 en-de" (dp0: no pretraining; the task and
    D_f also show in the Dataset column, Tracker.log_finetune_data); a study's candidate first
    ("en+fr df16k ..."). The run is found by its tags, never by this name."""
    mantissa, exponent = f"{key.lr:.1e}".split("e")
    lr = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    head = f"{key.candidate} " if key.candidate else ""
    return (f"{head}df{tokens(key.d_f)} dp{tokens(key.d_p) if key.d_p else 0} s{key.seed} "
            f"lr{lr} {key.task}")


COORDINATOR_RUN = "({})"
"""The names of a sweep's own runs, "(laws)", "(pretrain)": they sort before its trials."""


def trial_key_from_tags(tags: dict[str, str]) -> TrialKey:
    """The key of a trial run, read back from trial_tags'."""
    field = {name: tags[KEY_FIELD.format(name)] for name in ("task", "d_p", "d_f", "lr", "seed")}
    return TrialKey(field["task"], int(field["d_p"]), int(field["d_f"]), float(field["lr"]),
                    int(field["seed"]), tags.get(CANDIDATE, ""))
