"""The benchmark scripts keep working: each runs here as a short CPU smoke run (no figures are
asserted; the benchmarks report them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_pretraining_benchmark_runs_on_cpu():
    done = subprocess.run(
        [sys.executable, "bench/bench_gpu_pretrain.py", "--preset", "t5-tiny", "--steps", "3",
         "--warmup", "1", "--seq-len", "32", "--micro-batch", "2", "--vocab", "600"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rates = re.findall(r"^(raysweep \(DeepSpeed\)|plain PyTorch)\s+([\d,]+) tokens/s", done.stdout, re.M)
    assert [label for label, _ in rates] == ["raysweep (DeepSpeed)", "plain PyTorch"], done.stdout
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rates)
    assert re.search(r"raysweep / plain: \d+\.\d\d", done.stdout)


def test_verdict_benchmark_prints_its_confusion_matrix():
    done = subprocess.run(
        [sys.executable, "bench/bench_verdicts.py", "--quick", "--repeats", "1", "--resamples", "20",
         "--jobs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "noise below the effect" in done.stdout
    # Per band: studies, then the shares right / inconclusive / wrong, which add up to 100%.
    bands = re.findall(r"^all \((\d+)\)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%$", done.stdout, re.M)
    assert bands and sum(int(count) for count, *_ in bands) == 60, done.stdout
    assert all(abs(sum(map(float, shares)) - 100) < 0.5 for _, *shares in bands)
