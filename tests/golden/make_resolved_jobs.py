"""Write tests/golden/resolved_jobs.json: every job spec under jobs/, resolved as the sweep logs it.

tests/test_jobs.py checks that each job still resolves to exactly this: the job files may be
reorganised (`extends`, shared fragments) without changing what any job runs. Regenerate it only
when a job's plan is MEANT to change (a new job, a changed setting), and review the diff:

    .venv/bin/python tests/golden/make_resolved_jobs.py

`--repo DIR` resolves another checkout's jobs with that checkout's code (this file was first run
with `--repo` on the commit before `extends` took lists, so the golden is the old plan); the
output still goes beside this script unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# What the jobs read from the environment (tests/test_jobs.py sets the same values).
CLUSTER_ENV = {"RAYSWEEP_BUCKET": "raysweep-test-bucket",
               "MLFLOW_TRACKING_URI": "http://10.0.0.2:5000"}


def normalise(value, root: str):
    """The repo's absolute path as `<repo>`, so the golden does not depend on the checkout."""
    if isinstance(value, str):
        return value.replace(root, "<repo>")
    if isinstance(value, dict):
        return {key: normalise(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise(item, root) for item in value]
    return value


def job_specs(root: Path) -> list[Path]:
    """The runnable specs: `_*.yaml` are fragments that jobs `extends`, never run alone."""
    return sorted(p for p in (root / "jobs").rglob("*.yaml") if not p.name.startswith("_"))


def resolve_jobs(root: Path) -> dict[str, dict]:
    """{path under jobs/: the spec's as_dict(), normalised}, with the code imported from root."""
    from raysweep.spec_loader import load_spec

    return {str(path.relative_to(root / "jobs")): normalise(load_spec(path).as_dict(), str(root))
            for path in job_specs(root)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=str(HERE.parents[1]),
                        help="the checkout whose code and jobs/ to resolve (default: this one)")
    parser.add_argument("--out", default=str(HERE / "resolved_jobs.json"))
    args = parser.parse_args()
    root = Path(args.repo).resolve()
    sys.path.insert(0, str(root))  # that checkout's raysweep, not the installed one
    import raysweep

    if not Path(raysweep.__file__).resolve().is_relative_to(root):
        sys.exit(f"imported raysweep from {raysweep.__file__}, not from {root}")
    os.environ.update(CLUSTER_ENV)
    resolved = resolve_jobs(root)
    Path(args.out).write_text(json.dumps(resolved, indent=1, sort_keys=True) + "\n")
    print(f"{args.out}: {len(resolved)} jobs resolved by {raysweep.__file__}")


if __name__ == "__main__":
    main()
