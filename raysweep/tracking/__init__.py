"""Everything raysweep writes to MLflow goes through this package.

client.py: Tracker, the MlflowClient wrapper whose every write rides out an outage; schema.py: the
tag names runs are found by; buffered.py: BufferedMetrics, the hot loop's background writer;
params.py: sweep_params, the settings that tell sweeps apart, as the sweep run's params.
"""

from raysweep.tracking.buffered import BufferedMetrics
from raysweep.tracking.client import MAX_DESCRIPTION, Tracker, is_transient, outage_seconds
from raysweep.tracking.params import sweep_params
from raysweep.tracking.schema import (
    ATTEMPTS,
    BEST_LR,
    CANDIDATE,
    COMET_SCORER,
    COORDINATOR_RUN,
    EXPERIMENT_KIND,
    FAILURE,
    KEY_FIELD,
    KIND,
    KINDS,
    PREVIOUS_FAILURE,
    REJECTED_CHECKPOINT,
    REJECTED_PREFIX,
    SIGNATURE,
    TRIAL_KEY,
    VERDICT,
    VERDICT_PREFIX,
    WORKER,
    trial_key_from_tags,
    trial_run_name,
    trial_tags,
)

__all__ = ["ATTEMPTS", "BEST_LR", "CANDIDATE", "COMET_SCORER", "COORDINATOR_RUN",
           "EXPERIMENT_KIND", "FAILURE",
           "KEY_FIELD", "KIND", "KINDS", "MAX_DESCRIPTION", "PREVIOUS_FAILURE",
           "REJECTED_CHECKPOINT",
           "REJECTED_PREFIX", "SIGNATURE", "TRIAL_KEY", "VERDICT", "VERDICT_PREFIX", "WORKER",
           "BufferedMetrics", "Tracker", "is_transient", "outage_seconds", "sweep_params",
           "trial_key_from_tags", "trial_run_name", "trial_tags"]
