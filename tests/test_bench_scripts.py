"""The benchmark scripts keep working: each runs here as a short CPU smoke run (no figures are
asserted; the benchmarks report them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_pretraining_benchmark_runs_on_cpu():
    done = subprocess.run(
        [sys.executable, "bench/bench_gpu_pretrain.py", "--preset", "t5-tiny", "--steps", "3",
         "--warmup", "1", "--seq-len", "32", "--micro-batch", "2", "--vocab", "600"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rates = re.findall(r"^(raysweep \(DeepSpeed\)|plain PyTorch)\s+([\d,]+) tokens/s",
                       done.stdout, re.M)
    assert [label for label, _ in rates] == ["raysweep (DeepSpeed)", "plain PyTorch"], done.stdout
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rates)
    assert re.search(r"raysweep / plain: \d+\.\d\d", done.stdout)


def test_verdict_benchmark_prints_its_confusion_matrix():
    done = subprocess.run(
        [sys.executable, "bench/bench_verdicts.py", "--quick", "--repeats", "1", "--resamples",
         "20", "--jobs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "noise below the effect" in done.stdout
    # Per band: studies, then the shares right / inconclusive / wrong, which add up to 100%.
    bands = re.findall(r"^all \((\d+)\)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%$", done.stdout, re.M)
    assert bands and sum(int(count) for count, *_ in bands) == 60, done.stdout
    assert all(abs(sum(map(float, shares)) - 100) < 0.5 for _, *shares in bands)


def test_study_benchmark_prints_decisions_by_gap_and_the_compute_spent():
    done = subprocess.run([sys.executable, "bench/bench_study.py", "--studies", "12",
                           "--resamples", "20"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^  (raysweep|raysweep \+ stop|single-scale)\s+(\d+) studies\s+right\s+"
                      r"([\d.]+)%\s+wrong\s+(-?[\d.]+)%\s+no decision\s+([\d.]+)%$",
                      done.stdout, re.M)
    assert len(rows) == 9, done.stdout  # three rules in three bands of the gap
    assert sum(int(n) for rule, n, *_ in rows if rule == "single-scale") == 12
    assert all(abs(sum(map(float, shares)) - 100) < 0.5 for _, _, *shares in rows)
    spent = re.search(r"^  raysweep \+ stop\s+([\d.]+)%$", done.stdout, re.M)
    assert spent and 0 < float(spent.group(1)) <= 100


def test_bare_table_benchmark_prints_the_verdicts_of_each_shape():
    done = subprocess.run([sys.executable, "bench/bench_bare_tables.py", "--repeats", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^noise [\d.]+%\s+(.+?\)) +(.+)$", done.stdout, re.M)
    assert len(rows) == 8, done.stdout  # 2 noises x 4 shapes
    assert all(sum(int(n) for n in re.findall(r"(\d+)", counts)) == 2 for _, counts in rows)


def bench(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_train_loop_benchmark_refuses_a_spec_its_plain_arm_cannot_mirror(
        tiny_spec_dict, write_spec):
    tiny_spec_dict["pretrain"]["gradient_accumulation"] = 2
    done = bench("bench_train_loop.py", "--spec", str(write_spec(tiny_spec_dict)))
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert "cannot be compared like with like" in line and "gradient_accumulation" in line


@pytest.mark.parametrize("script", ["bench_train_loop.py", "bench_finetune.py",
                                    "bench_input_pipeline.py", "bench_resume.py"])
def test_benchmarks_refuse_an_unknown_preset_in_one_line(tiny_spec_dict, write_spec, script):
    tiny_spec_dict["model"] = {"preset": "t5-enormous"}
    done = bench(script, "--spec", str(write_spec(tiny_spec_dict)))
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(script.removesuffix(".py") + ": ") and "t5-enormous" in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the machine has a GPU")
def test_benchmarks_refuse_a_gpu_spec_on_a_machine_without_one(tiny_spec_dict, write_spec):
    tiny_spec_dict["resources"]["use_gpu"] = True
    done = bench("bench_finetune.py", "--spec", str(write_spec(tiny_spec_dict)))
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert "resources.use_gpu" in line and "has none" in line


def test_gpu_benchmark_refuses_an_unknown_preset():
    done = bench("bench_gpu_pretrain.py", "--preset", "t5-enormous")
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert "t5-enormous" in line and "t5-base" in line


@pytest.mark.slow
def test_train_loop_benchmark_runs_a_pair(tiny_spec_dict, write_spec):
    tiny_spec_dict["pretrain"]["log_every"] = 5
    done = bench("bench_train_loop.py", "--spec", str(write_spec(tiny_spec_dict)), "--steps", "15",
                 "--pairs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^pair 1 \(plain then raysweep\): plain [\d,]+, raysweep [\d,]+ tokens/s -> "
                     r"\d+\.\d\d$", done.stdout, re.M), done.stdout
    assert re.search(r"^raysweep / plain:\s+\d+\.\d\d \[\d+\.\d\d-\d+\.\d\d\]", done.stdout, re.M)


def test_input_pipeline_benchmark_runs(tiny_spec_dict, write_spec):
    done = bench("bench_input_pipeline.py", "--spec", str(write_spec(tiny_spec_dict)), "--steps",
                 "10", "--documents", "2000")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tokens/s" in done.stdout, done.stdout


def test_resume_benchmark_times_an_early_and_a_late_restart(tiny_spec_dict, write_spec):
    done = bench("bench_resume.py", "--spec", str(write_spec(tiny_spec_dict)), "--late", "40",
                 "--repeats", "1", "--file-mb", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    ratios = re.findall(r"^  late / early: (\d+\.\d\d) \[", done.stdout, re.M)
    assert len(ratios) == 2, done.stdout  # the synthetic mixture and the local file
    assert len(re.findall(r"without a position \(re-read\), at step 40:\s+\d+\.\d+ s",
                          done.stdout)) == 2


def test_resume_benchmark_refuses_a_step_it_cannot_resume_at(tiny_spec_dict, write_spec):
    done = bench("bench_resume.py", "--spec", str(write_spec(tiny_spec_dict)), "--late", "1")
    assert done.returncode == 2 and "--late must be at least 3" in done.stderr, done.stderr[-3000:]


def test_big_corpus_benchmark_times_the_validation_of_a_generated_corpus(
        tiny_spec_dict, write_spec):
    done = bench("bench_big_corpus.py", "--spec", str(write_spec(tiny_spec_dict)), "--gb", "0.004",
                 "--validate-only")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^(synthetic|local JSONL, [\d.]+ GB)\s+validate\s+\d+\.\d s$",
                      done.stdout, re.M)
    assert [row.split(",")[0] for row in rows] == ["synthetic", "local JSONL"], done.stdout


def test_law_benchmark_prints_timings_and_coverage():
    done = bench("bench_laws.py", "--seeds", "5", "--resamples", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    arms = re.findall(r"^\s+(log_law|power_law)\s+\d+ starts: fit\s+[\d.]+ ms vs\s+[\d.]+ ms "
                      r"\(\s*[\d.]+x\) \| bootstrap\s+[\d.]+ s vs\s+[\d.]+ s \(\s*[\d.]+x\)$",
                      done.stdout, re.M)
    assert arms == ["log_law", "power_law"], done.stdout
    rows = re.findall(r"^\s+(\d+)% noise: prediction (\d\.\d\d) \(", done.stdout, re.M)
    assert [noise for noise, _ in rows] == ["1", "5", "15", "30"], done.stdout


@pytest.mark.slow
def test_finetune_benchmark_runs(tiny_spec_dict, write_spec):
    done = bench("bench_finetune.py", "--spec", str(write_spec(tiny_spec_dict)), "--trials", "2",
                 "--steps", "10", "--publications", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"\d+\.\d\d", done.stdout) and "trial" in done.stdout, done.stdout


@pytest.mark.slow
def test_control_plane_benchmark_runs_a_small_grid(tiny_spec_dict, write_spec):
    done = bench("bench_control_plane.py", "--spec", str(write_spec(tiny_spec_dict)),
                 "--tasks", "2", "--checkpoints", "3", "--sizes", "1", "--lrs", "2", "--seeds", "1",
                 "--concurrency", "2", "--publish-every", "0.1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "16 trial keys" in done.stdout and "ok=True" in done.stdout, done.stdout
    assert "16 trials finished" in done.stdout, done.stdout
    assert re.search(r"coordinator overhead per trial: \d+\.\d\d slot-seconds", done.stdout)
    assert re.search(r"fitter lag at the end: -?\d+\.\d s .* the figures -?\d+\.\d s", done.stdout)
    quarters = r"^\s+\d+ trials:\s+(\d+\.\d\d|nan)/s, fitter [\d,]+, watcher [\d,]+$"
    assert re.search(quarters, done.stdout, re.M), done.stdout
    assert re.search(r"MLflow: runs \d+", done.stdout)
    assert re.search(r"^verdicts \(.*\): \w", done.stdout, re.M), done.stdout


def test_control_plane_benchmark_refuses_a_grid_without_a_law():
    done = bench("bench_control_plane.py", "--checkpoints", "2")
    assert done.returncode == 2 and "--checkpoints must be at least 3" in done.stderr, done.stderr


def test_reliability_runner_runs_a_selection_without_writing_the_table():
    page = ROOT / "docs" / "reliability.md"
    before = page.read_text()
    done = bench("reliability.py", "-k", "test_fuzz_specs")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert page.read_text() == before  # a selection is not the whole table


@pytest.mark.slow
def test_mlflow_load_benchmark_loses_no_write_on_either_backend():
    from _servers import postgres_bin

    if postgres_bin() is None and not os.environ.get("RAYSWEEP_CI"):
        pytest.skip("PostgreSQL is not installed here (CI installs it)")
    done = bench("bench_mlflow_load.py", "--writers", "2", "--seconds", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    totals = re.findall(r"^(postgresql|sqlite): \d+ writes in .* trial runs, failed after retries "
                        r"(\d+), lost (\d+)$", done.stdout, re.M)
    assert totals == [("postgresql", "0", "0"), ("sqlite", "0", "0")], done.stdout
    assert len(re.findall(r"^  every write +n=\d+ +p50 +[\d.]+ ms +p95 +[\d.]+ ms", done.stdout,
                          re.M)) == 2, done.stdout


def test_mlflow_load_benchmark_refuses_an_unknown_backend():
    done = bench("bench_mlflow_load.py", "--backends", "mysql")
    assert done.returncode == 2 and "--backends: unknown ['mysql']" in done.stderr, done.stderr


@pytest.mark.slow
def test_control_plane_benchmark_runs_a_small_study(tiny_spec_dict, write_spec):
    done = bench("bench_control_plane.py", "--spec", str(write_spec(tiny_spec_dict)),
                 "--tasks", "1", "--checkpoints", "3", "--sizes", "1", "--lrs", "1", "--seeds", "1",
                 "--concurrency", "2", "--publish-every", "0.1", "--candidates", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    # The shared baseline once, then 2 candidates x 3 checkpoints: 7 starting points, 1 trial each.
    assert re.search(r"^7 trial keys: 1 tasks x 7 starting points \(the shared baseline \+ 2 "
                     r"candidates x 3 checkpoints\)", out, re.M), out
    assert re.search(r"^2 candidates \(no stopping policy\), effect on D_p: en-de \d\.\d\d, "
                     r"en-fr \d\.\d\d$", out, re.M), out
    assert "ok=True" in out and re.search(r"^7 trials finished of 7 planned$", out, re.M), out
    assert re.search(r"^by candidate: the shared baseline 1, en-de 3, en-fr 3$", out, re.M), out
    overhead = re.search(r"coordinator overhead per trial: (\d+\.\d\d) slot-seconds", out)
    assert overhead and 0 < float(overhead.group(1)) < 60, out
    lag = re.search(r"fitter lag at the end: (-?\d+\.\d) s .* the figures -?\d+\.\d s", out)
    assert lag and -5 < float(lag.group(1)) < 120, out
    assert re.search(r"MLflow: runs \d+", out)
    assert re.search(r"^verdicts \(.*\): \w", out, re.M), out
    laws = re.search(r"^laws by candidate: en-de (\d+), en-fr (\d+)$", out, re.M)
    assert laws and int(laws.group(1)) == int(laws.group(2)) > 0, out
