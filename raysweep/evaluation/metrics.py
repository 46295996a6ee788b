"""Evaluation of a finetuned model: decoding, BLEU/chrF (sacrebleu), ROUGE-L, cross-entropy, COMET.

Decisions recorded with every result (the paper leaves them open):
- BLEU and chrF are corpus-level sacrebleu scores; the signature is logged with each trial.
- ROUGE-L uses a Unicode-aware tokenizer: rouge-score's default drops every non-ASCII letter,
  which would silently wreck German, French and Romanian scores.
- Downstream cross-entropy is the mean per-token negative log-likelihood (nats) of the reference
  under teacher forcing, padding excluded.

Every test metric comes with its standard error (`<metric>_se`), measured on the test set itself,
so a law fit can tell test-set noise from a real trend. The SE is that of the test-set sample only
(resampling sentences); it says nothing of finetuning-seed variance.
- BLEU, chrF: not means of sentence scores, so no closed form: a bootstrap over test sentences on
  sacrebleu's per-sentence sufficient statistics, scored by sacrebleu's own formula (same as its
  `n_bootstrap`, which we do not call: it changes the logged signature, reads its seed from
  SACREBLEU_SEED and reports a CI half-width, not an SE). Fixed seed: deterministic.
- ROUGE-L, COMET: means of sentence scores, so std(ddof=1) / sqrt(n).
- cross-entropy: a ratio of sums (NLL / tokens), so the delta-method SE of a ratio estimator.

Paired replicates (`replicates`, per metric): every metric is also rescored on the same
BOOTSTRAP_SAMPLES resamples of the test set. The resamples depend only on the number of test
sentences and a fixed seed, so every trial of a task draws THE SAME resamples: replicate i of one
checkpoint and replicate i of another saw the same sentences. The covariance of two checkpoints'
replicates is the test-set noise they share (a hard sentence is hard for both), which cancels in
their difference: what the law analysis needs to tell a trend from test-set luck (the paired
bootstrap of Koehn 2004, across a whole series of checkpoints).
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import torch

from raysweep.model import for_model

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 12345  # sacrebleu's default seed; fixed so a rerun logs the same SE


def _require_two(n: int) -> None:
    if n < 2:
        raise ValueError(
            f"the test set has {n} sentence(s); a standard error needs at least 2: "
            f"set tasks[].test_examples to 2 or more")


class UnicodeWordTokenizer:
    """Lowercased runs of Unicode letters/digits: 'Über das Café!' -> ['über', 'das', 'café']."""

    _word = re.compile(r"\w+", re.UNICODE)

    def tokenize(self, text: str) -> list[str]:
        return self._word.findall(text.lower())


def mean_se(values) -> float:
    """Standard error of a mean of per-sentence scores: std (ddof=1) / sqrt(n)."""
    values = np.asarray(values, dtype=np.float64)
    _require_two(len(values))
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def ratio_se(nll, tokens) -> float:
    """Standard error of the token-weighted cross-entropy sum(nll) / sum(tokens), sentences
    being the sampled units. Delta method (linearised ratio estimator; cheap and deterministic,
    and agrees with a sentence bootstrap for the test sizes used):
    SE = sqrt(sum(d_i^2) / (n (n - 1))) / mean(tokens), d_i = nll_i - R tokens_i."""
    nll = np.asarray(nll, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    n = len(nll)
    _require_two(n)
    ratio = nll.sum() / tokens.sum()
    d = nll - ratio * tokens
    return float(math.sqrt(d @ d / (n * (n - 1))) / tokens.mean())


def rouge_l_sentences(hypotheses: list[str], references: list[str]) -> list[float]:
    """Per-sentence ROUGE-L F-measures in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeWordTokenizer())
    return [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]


def rouge_l(hypotheses: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure in [0, 1]."""
    scores = rouge_l_sentences(hypotheses, references)
    return sum(scores) / max(len(scores), 1)


@functools.lru_cache(maxsize=4)
def resample_counts(n: int, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(samples x n): how often each of n test sentences is drawn in each bootstrap resample.
    Depends on n and the seed only: every trial scored on the same test set gets the same
    resamples (see the module docstring: paired replicates). Cached (one trial rescores five
    metrics on them), so read-only."""
    _require_two(n)
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    counts = np.bincount((draws + n * np.arange(samples)[:, None]).ravel(),
                         minlength=samples * n).reshape(samples, n)
    counts.flags.writeable = False
    return counts


def corpus_replicates(metric, stats) -> np.ndarray:
    """A corpus-level sacrebleu metric rescored on each resample of resample_counts, from its
    per-sentence sufficient statistics `stats` (`metric._extract_corpus_statistics`) with
    sacrebleu's own formula. Vectorised: all resampled corpus statistics are one matrix product;
    only sacrebleu's final formula (microseconds) runs per resample."""
    stats = np.asarray(stats, dtype=np.float64)  # integer counts: exact in float64
    sums = np.rint(resample_counts(len(stats)) @ stats).astype(np.int64).tolist()
    return np.asarray([metric._compute_score_from_stats(row).score for row in sums])


def bootstrap_se(metric, stats) -> float:
    """Bootstrap SE of a corpus-level sacrebleu metric: the std of its replicates."""
    return float(np.std(corpus_replicates(metric, stats), ddof=1))


def mean_replicates(values) -> np.ndarray:
    """A mean of per-sentence scores (ROUGE-L, COMET) on each resample."""
    values = np.asarray(values, dtype=np.float64)
    return resample_counts(len(values)) @ values / len(values)


def ratio_replicates(nll, tokens) -> np.ndarray:
    """Token-weighted cross-entropy sum(nll) / sum(tokens) on each resample."""
    counts = resample_counts(len(nll))
    return (counts @ np.asarray(nll, np.float64)) / (counts @ np.asarray(tokens, np.float64))


def corpus_score_replicates(metric, hypotheses: list[str],
                            references: list[str]) -> tuple[float, np.ndarray]:
    """(corpus score, replicates). The score is computed exactly as `metric.corpus_score` does
    (check, extract per-sentence statistics, aggregate); the statistics are extracted once and
    reused for the bootstrap, as extraction is most of the cost (chrF: ~0.25 s per 500
    sentences)."""
    refs = [references]
    metric._check_corpus_score_args(hypotheses, refs)
    stats = metric._extract_corpus_statistics(hypotheses, refs)
    return metric._aggregate_and_compute(stats).score, corpus_replicates(metric, stats)


def bleu_chrf(hypotheses: list[str], references: list[str], tokenize: str = "13a",
              bootstrap: bool = False) -> dict:
    """Corpus BLEU and chrF with their signatures; with `bootstrap`, also `bleu_se`/`chrf_se`
    and their paired replicates under "replicates"."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    chrf = sacrebleu.metrics.CHRF()
    if bootstrap:
        result, replicates = {}, {}
        for name, metric in (("bleu", bleu), ("chrf", chrf)):
            result[name], replicates[name] = corpus_score_replicates(metric, hypotheses,
                                                                      references)
            result[f"{name}_se"] = float(np.std(replicates[name], ddof=1))
        result["replicates"] = replicates
    else:
        result = {"bleu": bleu.corpus_score(hypotheses, [references]).score,
                  "chrf": chrf.corpus_score(hypotheses, [references]).score}
    result.update(bleu_signature=str(bleu.get_signature()),
                  chrf_signature=str(chrf.get_signature()))
    return result


@torch.no_grad()
def sentence_nll(model, pairs: list[tuple[str, str]], tokenizer, max_length: int,
                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: summed NLL (nats) of the reference given the source, teacher-forced, and its
    number of target tokens (padding excluded). What cross-entropy and its SE are built from."""

    family = for_model(model)
    model.eval()
    nll, tokens = [], []
    for start in range(0, len(pairs), batch_size):
        batch = family.pair_batch(pairs[start:start + batch_size], tokenizer, max_length)
        batch_nll, batch_tokens = family.sentence_nll(model, batch)
        nll += batch_nll
        tokens += batch_tokens
    return np.asarray(nll, dtype=np.float64), np.asarray(tokens, dtype=np.int64)


def cross_entropy(model, pairs: list[tuple[str, str]], tokenizer, max_length: int,
                  batch_size: int = 32) -> float:
    """Mean per-token NLL (nats) of the references given the sources, teacher-forced."""
    nll, tokens = sentence_nll(model, pairs, tokenizer, max_length, batch_size)
    return float(nll.sum() / max(int(tokens.sum()), 1))


@torch.no_grad()
def translate(model, sources: list[str], tokenizer, max_length: int, max_new_tokens: int,
              num_beams: int = 1, batch_size: int = 32) -> list[str]:

    family = for_model(model)
    model.eval()
    outputs = []
    for start in range(0, len(sources), batch_size):
        outputs += family.translate(model, tokenizer, sources[start:start + batch_size], max_length,
                                    max_new_tokens, num_beams)
    return [o.strip() for o in outputs]


def evaluate_translation(model, tokenizer, test: list[tuple[str, str]], spec, task,
                         score_comet=None) -> dict:
    """All test metrics of one finetuned model, each with its standard error `<metric>_se`, and
    `test_sentences`. Values are floats; signatures are strings; "replicates" holds each
    metric's paired bootstrap replicates (arrays), "examples" a few translations.
    `score_comet(sources, hypotheses, references)` returns COMET's (segment scores, system score)
    (the shared scorer actor in a sweep, raysweep/evaluation/scorer.py)."""
    _require_two(len(test))
    ev = spec.evaluation
    sources = [s for s, _ in test]
    references = [t for _, t in test]
    hypotheses = translate(model, sources, tokenizer, task.max_length, ev.max_new_tokens,
                           ev.num_beams)
    result = bleu_chrf(hypotheses, references, ev.bleu_tokenize, bootstrap=True)
    replicates = result["replicates"]
    rouge = rouge_l_sentences(hypotheses, references)
    result.update(rougeL=sum(rouge) / len(rouge), rougeL_se=mean_se(rouge))
    replicates["rougeL"] = mean_replicates(rouge)
    nll, tokens = sentence_nll(model, test, tokenizer, task.max_length)
    result.update(cross_entropy=float(nll.sum() / max(int(tokens.sum()), 1)),
                  cross_entropy_se=ratio_se(nll, tokens))
    replicates["cross_entropy"] = ratio_replicates(nll, tokens)
    if score_comet is not None:
        segments, system = score_comet(sources, hypotheses, references)
        result.update(comet=float(system), comet_se=mean_se(segments))
        # The system score is the mean of the segment scores (COMET's own definition).
        replicates["comet"] = mean_replicates(segments)
    result["test_sentences"] = float(len(test))  # a float: kept as a metric
    for name in ("bleu", "chrf", "rougeL", "cross_entropy", "comet"):
        for key in (name, f"{name}_se"):
            if key in result and not math.isfinite(result[key]):
                raise FloatingPointError(f"metric {key} is not finite ({result[key]})")
    result["examples"] = [{"source": s, "reference": r, "hypothesis": h}
                          for s, r, h in list(zip(sources, references, hypotheses))[:5]]
    return result
