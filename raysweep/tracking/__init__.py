"""Everything raysweep writes to MLflow goes through this package.

client.py: Tracker, the MlflowClient wrapper whose every write rides out an outage; schema.py: the
tag names runs are found by; buffered.py: BufferedMetrics, the hot loop's background writer.
"""

from raysweep.tracking.buffered import BufferedMetrics
from raysweep.tracking.client import MAX_DESCRIPTION, Tracker, is_transient, outage_seconds
from raysweep.tracking.schema import (
    ATTEMPTS,
    BEST_LR,
    COMET_SCORER,
    EXPERIMENT_KIND,
    FAILURE,
    KEY_FIELD,
    KIND,
    KINDS,
    PARENT,
    PREVIOUS_FAILURE,
    REJECTED_CHECKPOINT,
    REJECTED_PREFIX,
    SIGNATURE,
    TRIAL_KEY,
    VERDICT,
    VERDICT_PREFIX,
    WORKER,
)

__all__ = ["ATTEMPTS", "BEST_LR", "COMET_SCORER", "EXPERIMENT_KIND", "FAILURE", "KEY_FIELD", "KIND",
           "KINDS", "MAX_DESCRIPTION", "PARENT", "PREVIOUS_FAILURE", "REJECTED_CHECKPOINT",
           "REJECTED_PREFIX", "SIGNATURE", "TRIAL_KEY", "VERDICT", "VERDICT_PREFIX", "WORKER",
           "BufferedMetrics", "Tracker", "is_transient", "outage_seconds"]
