"""Logging, configured once per process: by the command line for the driver, and by Ray's worker
setup hook in every worker process of a sweep (trials, pretraining workers, the coordinators),
whose logs are in Ray's session logs (`ray logs`, the dashboard; RAYSWEEP_WORKER_LOGS=1 streams
them to the driver).

raysweep's own loggers (`logging.getLogger(__name__)` in every module) log at
`--log-level` / RAYSWEEP_LOG_LEVEL (default INFO); the libraries' at WARNING, so that MLflow,
Ray and transformers do not bury what raysweep says. The driver's live progress line is a
display (printed), not a log.
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_VARIABLE = "RAYSWEEP_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record is logged (a redirect, a test's capture), not
    as it was when logging was configured."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(level: str | None = None) -> str:
    """Set raysweep's log level (default: RAYSWEEP_LOG_LEVEL, else INFO) and the libraries' to
    WARNING, with one handler on stderr; returns the level, which is also exported in
    RAYSWEEP_LOG_LEVEL so that the sweep's Ray workers log at it too. Calling it again changes
    the level and adds no second handler."""
    level = (level or os.environ.get(LEVEL_VARIABLE) or "INFO").upper()
    if level not in LEVELS:
        level = "INFO"  # a typo in an environment variable must not stop a sweep
    os.environ[LEVEL_VARIABLE] = level
    # MLflow sets its own loggers' level when it is imported (later): it reads this variable.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    root = logging.getLogger()
    if not any(getattr(h, "raysweep", False) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        handler.raysweep = True
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("raysweep").setLevel(level)
    return level


def configure_worker() -> None:
    """Ray's worker_process_setup_hook (raysweep.sweep passes it in the runtime environment)."""
    configure()
