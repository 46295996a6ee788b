"""A large local corpus: how long validation and the start of pretraining take, against the same
spec on synthetic sources.

    .venv/bin/python bench/bench_big_corpus.py [--gb 1] [--spec jobs/demo.yaml] [--validate-only]

Generates a JSONL mixture of about --gb GB (an en and a de file, half each, in a temporary folder
that is removed after) and times, for it and for the spec's own synthetic mixture, one after the
other:
  1. `raysweep validate SPEC`: the data checks (every row read once; each pretraining worker's
     shard tokenized until it holds what the schedule needs);
  2. `raysweep run SPEC` until the pretraining run logs its first step to MLflow (then stopped
     with SIGTERM, as `ray job stop` would): what a user waits for before training starts.
Prints the seconds of each and the difference the corpus makes (target: the 1 GB corpus validated
and pretraining started in under 60 s each; the synthetic run shows Ray's fixed start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import load_bench_spec, refuse

from raysweep.spec_loader import read_spec_data

BIN = Path(sys.executable).parent


def write_corpus(folder: Path, language: str, size: float) -> Path:
    """About `size` bytes of JSONL: distinct synthetic documents, numbered, cycled."""
    from raysweep.data import synthetic

    lines = [json.dumps({"text": synthetic.monolingual_document(language, i)})
             for i in range(20000)]
    block = "\n".join(lines) + "\n"
    path = folder / f"{language}.jsonl"
    with path.open("w") as out:
        for _ in range(max(1, int(size // len(block)))):
            out.write(block)
    return path


def timed_validate(spec: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "raysweep"), "validate", str(spec)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"bench_big_corpus: validate failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started


def seconds_to_first_step(spec: Path, root: Path) -> float:
    """`raysweep run` until the pretraining run has a `loss` in MLflow; then SIGTERM."""
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    run = subprocess.Popen([str(BIN / "raysweep"), "run", str(spec)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, "RAY_ADDRESS": ""})
    try:
        while run.poll() is None:
            time.sleep(0.5)
            if not (root / "mlartifacts").exists():  # the driver has not set up MLflow yet
                continue
            client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
            runs = [r for e in client.search_experiments() if e.name != "Default"
                    for r in client.search_runs([e.experiment_id],
                                                "tags.`raysweep.kind` = 'pretrain'")]
            if runs and "loss" in runs[0].data.metrics:
                return time.perf_counter() - started
        sys.exit("bench_big_corpus: the run ended before pretraining logged a step")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--spec", default="jobs/demo.yaml")
    parser.add_argument("--validate-only", action="store_true",
                        help="time validation alone (the smoke test: no Ray)")
    args = parser.parse_args()
    if args.gb <= 0:
        refuse("--gb must be positive")
    load_bench_spec(args.spec)  # a bad spec is refused here, not in a subprocess
    data = read_spec_data(Path(args.spec))  # `extends` merged
    with tempfile.TemporaryDirectory(prefix="raysweep-bench-corpus-") as temp:
        folder = Path(temp)
        files = [write_corpus(folder, language, args.gb * 1e9 / 2) for language in ("en", "de")]
        size = sum(f.stat().st_size for f in files) / 1e9
        results = {}
        for label, mixture in (("synthetic", data["pretrain"]["mixture"]),
                               (f"local JSONL, {size:.2f} GB", [
                                   {"source": f"file:{f}", "language": f.stem, "weight": 0.5}
                                   for f in files])):
            name = "corpus" if label != "synthetic" else "synthetic"
            spec = folder / f"{name}.yaml"
            spec.write_text(yaml.safe_dump({**data, "name": name, "storage": str(folder / "runs"),
                                            "pretrain": {**data["pretrain"], "mixture": mixture}}))
            validate = timed_validate(spec)
            if args.validate_only:
                print(f"{label:28} validate {validate:6.1f} s", flush=True)
                continue
            results[label] = (validate, seconds_to_first_step(spec, folder / "runs" / name))
            print(f"{label:28} validate {validate:6.1f} s | run to the first pretraining step "
                  f"{results[label][1]:6.1f} s", flush=True)
    if args.validate_only:
        return
    (synthetic_v, synthetic_r), (corpus_v, corpus_r) = results.values()
    print(f"the corpus adds {corpus_v - synthetic_v:+.1f} s to validation and "
          f"{corpus_r - synthetic_r:+.1f} s to the start of pretraining; target for 1 GB, under "
          f"60 s each: validation {corpus_v:.1f} s ({'met' if corpus_v < 60 else 'NOT met'}), the "
          f"start {corpus_r:.1f} s ({'met' if corpus_r < 60 else 'NOT met'}; {synthetic_r:.1f} s "
          f"of it is the start-up every sweep pays here, the synthetic run)")

if __name__ == "__main__":
    main()
