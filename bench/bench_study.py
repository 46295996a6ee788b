"""How often a study names the right candidate, and what stopping losers saves.

    .venv/bin/python bench/bench_study.py [--studies 2000] [--confidence 0.95] [--after 3]
                                          [--stop-confidence P] [--quick] [--seed 0]

Each simulated study has 2 to 6 candidates and 6 checkpoints (log-spaced over 1.5 decades of D_p,
as in the demo), the decision at the largest. A candidate's true curve is one of the paper's
shapes: a log-law rise of a random size (aligned), flat, falling, or rising then falling; its
measurements carry the noise a sweep measures: a test-set part shared by every candidate (one
test set: paired bootstrap replicates carry it, as raysweep.evaluation.metrics logs them), a
test-set part of its own and a finetune-seed part. Three rules decide on the same measurements:
  raysweep         raysweep.study.compare at the largest checkpoint, every candidate trained to
                   the end: the best named when P(best) >= confidence, else no decision;
  raysweep + stop  the same, with raysweep.study.stopping after every checkpoint from --after on:
                   a candidate the leader beats with P >= confidence stops pretraining; then
                   the decision as the study makes it, at the target, each stopped candidate
                   read as it stood when it stopped (so a stop that was wrong shows as no
                   decision, not as a wrong one);
  single-scale     DataDecide's rule: the best measured value at the largest checkpoint, always.
Prints, by the true gap between the best two (in standard errors of their measured difference),
the share of right, wrong and undecided studies per rule, and the pretraining compute each
spends (tokens, against every candidate trained to the end). Targets (issue 30): where the best
leads by 4 standard errors or more, >= 95% right and <= 1% wrong; below that, no decision rather
than a wrong one; with stopping, >= 30% of the compute saved, right within 1 point of no stop.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from raysweep.laws import LOG_LAW
from raysweep.laws.analysis import analyse
from raysweep.study.compare import Candidate, compare
from raysweep.study.stopping import losers

D_P = np.logspace(np.log10(2e4), np.log10(6.4e5), 6)
LEVEL = 10.0  # a BLEU-like metric
REPLICATES = 200
SHARES = {"shared test": 0.5, "own test": 0.2, "seeds": 0.3}
"""How a point's variance splits (the demo's BLEU: test set about 70%, seeds 30%)."""
BACKTEST_POINTS = 3
"""fit.backtest_points of the simulated studies: a law is checked on the 4th checkpoint on."""
BANDS = (("gap >= 4 SE", 4.0), ("gap 2-4 SE", 2.0), ("gap < 2 SE", 0.0))
SHAPES = ("aligned", "aligned", "aligned", "flat", "falling", "peaked")
"""The candidates' true shapes, drawn with these odds (most candidates help)."""


def true_curve(shape: str, effect: float) -> np.ndarray:
    u = np.linspace(0, 1, D_P.size)
    if shape == "aligned":
        return LEVEL * (1 + effect * np.log1p(9 * u) / np.log(10))
    if shape == "falling":
        return LEVEL * (1 + 0.05 - effect * u)
    if shape == "peaked":
        return LEVEL * (1 + effect * (1 - ((u - 0.5) / 0.5) ** 2) - 0.5 * effect * u)
    return np.full(D_P.size, LEVEL)


def simulate(rng, k: int, noise: float) -> tuple[np.ndarray, list[Candidate], float]:
    """(true values: candidates x checkpoints, the candidates as measured, the true gap between
    the best two at the last checkpoint in standard errors of their measured difference)."""
    truth = np.array([true_curve(rng.choice(SHAPES), rng.uniform(0.02, 0.3)) for _ in range(k)])
    sd = {part: noise * LEVEL * np.sqrt(share) for part, share in SHARES.items()}
    shared_luck = rng.standard_normal(D_P.size) * sd["shared test"]
    shared_reps = rng.standard_normal((D_P.size, REPLICATES)) * sd["shared test"]
    candidates = []
    for c in range(k):
        own = rng.standard_normal(D_P.size) * sd["own test"]
        seeds = rng.standard_normal(D_P.size) * sd["seeds"]
        values = truth[c] + shared_luck + own + seeds
        test_se = float(np.hypot(sd["shared test"], sd["own test"]))
        se = float(np.sqrt(test_se ** 2 + sd["seeds"] ** 2))
        reps = values[:, None] + shared_reps + (
            rng.standard_normal((D_P.size, REPLICATES)) * sd["own test"])
        candidates.append(Candidate(
            f"c{c}", {float(d): {"y": float(v), "se": se, "test_se": test_se}
                      for d, v in zip(D_P, values)},
            replicates={float(d): r for d, r in zip(D_P, reps)}))
    last = np.sort(truth[:, -1])
    diff_se = np.sqrt(2 * (sd["own test"] ** 2 + sd["seeds"] ** 2))
    return truth, candidates, float((last[-1] - last[-2]) / diff_se)


def upto(candidate: Candidate, j: int, baseline: tuple[float, float],
         resamples: int) -> Candidate:
    """The candidate as it stands when checkpoint j (0-based) has arrived, with its law analysed
    (as the study's fitter does) and predicted at the target, the last checkpoint."""
    kept = {d: p for d, p in candidate.points.items() if d <= D_P[j] * (1 + 1e-9)}
    xs = sorted(kept)
    analysis = analyse(LOG_LAW, xs, [kept[d]["y"] for d in xs], 0.1,
                       se=[kept[d]["se"] for d in xs], baseline=baseline[0],
                       baseline_se=baseline[1], increasing=True, predict_at=[D_P[-1]],
                       resamples=resamples, min_effect=0.02 * LEVEL, k=BACKTEST_POINTS)
    return Candidate(candidate.name, kept, {d: candidate.replicates[d] for d in kept}, analysis)


def with_stopping(candidates, baseline, confidence: float, after: int, resamples: int,
                  stop_confidence: float | None = None) -> tuple[str | None, float]:
    """(the best named, the share of the pretraining tokens spent) with losers stopped: from
    checkpoint `after` on, each look compares the candidates still training at the target
    (raysweep.study.stopping's rule). The decision is then made as the study makes
    it: every candidate compared at the target, a stopped one as it stood when it stopped."""
    stop_confidence = stop_confidence or confidence
    alive, stopped_at, as_stopped = [c.name for c in candidates], {}, {}
    by_name = {c.name: c for c in candidates}
    for j in range(after - 1, D_P.size - 1):
        now = [upto(by_name[n], j, baseline, resamples) for n in alive]
        if len(now) < 2:
            continue
        comparison = compare(now, "bleu", increasing=True, at=D_P[-1],
                             confidence=stop_confidence)
        for name in losers([comparison], stop_confidence, D_P[-1]):
            alive.remove(name)
            stopped_at[name] = D_P[j]
            as_stopped[name] = next(c for c in now if c.name == name)
    spent = sum(stopped_at.get(c.name, D_P[-1]) for c in candidates) / (len(candidates) * D_P[-1])
    if not as_stopped:
        final = compare(candidates, "bleu", increasing=True, confidence=confidence)
        return final.best, spent
    finished = [upto(by_name[n], D_P.size - 1, baseline, resamples) for n in alive]
    final = compare(finished + list(as_stopped.values()), "bleu", increasing=True, at=D_P[-1],
                    confidence=confidence)
    return final.best, spent


def one_study(rng, confidence: float, after: int, resamples: int,
              stop_confidence: float | None = None) -> dict:
    k, noise = int(rng.choice([2, 3, 4, 6])), float(rng.choice([0.01, 0.02, 0.05, 0.1]))
    truth, candidates, gap = simulate(rng, k, noise)
    # The shared no-pretraining baseline, below every curve's start.
    baseline = (0.9 * LEVEL + rng.normal(0, noise * LEVEL), noise * LEVEL)
    right = f"c{int(np.argmax(truth[:, -1]))}"
    full = compare(candidates, "bleu", increasing=True, confidence=confidence)
    stopped_best, spent = with_stopping(candidates, baseline, confidence, after, resamples,
                                        stop_confidence)
    single = max(candidates, key=lambda c: c.points[float(D_P[-1])]["y"]).name
    return {"gap": gap, "right": right, "spent": spent,
            "raysweep": full.best, "raysweep + stop": stopped_best, "single-scale": single}


def summarise(rows: list[dict]) -> dict:
    table = defaultdict(dict)
    for band, low in BANDS:
        high = min([b for _, b in BANDS if b > low], default=np.inf)
        chosen = [r for r in rows if low <= r["gap"] < high]
        for rule in ("raysweep", "raysweep + stop", "single-scale"):
            n = max(len(chosen), 1)
            right = sum(r[rule] == r["right"] for r in chosen) / n
            none = sum(r[rule] is None for r in chosen) / n
            table[band][rule] = {"studies": len(chosen), "right": right, "undecided": none,
                                 "wrong": max(0.0, 1 - right - none)}  # not -0.0
    table["compute"] = {"raysweep": 1.0, "single-scale": 1.0,
                        "raysweep + stop": float(np.mean([r["spent"] for r in rows]))}
    return dict(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--after", type=int, default=3, help="checkpoints before any stop")
    parser.add_argument("--stop-confidence", type=float, default=None,
                        help="P(better) that stops a candidate (default: --confidence)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=100, help="each law's bootstrap")
    parser.add_argument("--quick", action="store_true", help="200 studies (a smoke test)")
    args = parser.parse_args(argv)
    rng, started = np.random.default_rng(args.seed), time.time()
    count = 200 if args.quick else args.studies
    rows = [one_study(rng, args.confidence, args.after, args.resamples, args.stop_confidence)
            for _ in range(count)]
    table = summarise(rows)
    print(f"{count} simulated studies (2-6 candidates, 6 checkpoints), confidence "
          f"{args.confidence}, stopping from checkpoint {args.after} at P(better) >= "
          f"{args.stop_confidence or args.confidence}; "
          f"{time.time() - started:.0f} s")
    for band, _ in BANDS:
        print(f"\n{band}:")
        for rule, row in table[band].items():
            print(f"  {rule:16} {row['studies']:5} studies   right {row['right']:6.1%}   "
                  f"wrong {row['wrong']:6.1%}   no decision {row['undecided']:6.1%}")
    print("\npretraining compute spent (tokens, all candidates to the end = 100%):")
    for rule, share in table["compute"].items():
        print(f"  {rule:16} {share:6.1%}")
    return table


if __name__ == "__main__":
    main()
