"""Standard errors of the test metrics, measured on the test set itself
(raysweep/evaluation/metrics.py):
real sacrebleu and rouge-score code, no mocks; one end-to-end trial evaluation on a tiny T5 with
the tiny offline COMET model."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sacrebleu

from raysweep.evaluation.metrics import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    bleu_chrf,
    bootstrap_se,
    evaluate_translation,
    mean_replicates,
    mean_se,
    ratio_replicates,
    ratio_se,
    resample_counts,
    rouge_l,
    rouge_l_sentences,
)

WORDS = ("der die das ein eine Hund Katze Haus Baum Fluss Stadt Freund Lehrer Kind Buch Brief "
         "Garten Fenster sieht mag liest heute immer").split()


def noisy_set(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(hypotheses, references): references of 6-16 words, each word kept with p = 0.7."""
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))) + "." for _ in range(n)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(WORDS) for w in r[:-1].split()) + "."
            for r in refs]
    return hyps, refs


def test_bleu_and_chrf_se_shrink_as_one_over_sqrt_n():
    hyps, refs = noisy_set(100)
    once = bleu_chrf(hyps, refs, bootstrap=True)
    four = bleu_chrf(hyps * 4, refs * 4, bootstrap=True)
    for name in ("bleu", "chrf"):
        assert four[name] == pytest.approx(once[name])  # replication keeps the corpus score
        assert 0 < once[f"{name}_se"] < 5
        assert four[f"{name}_se"] / once[f"{name}_se"] == pytest.approx(0.5, abs=0.06)


def test_point_scores_and_signatures_are_sacrebleus_own_and_the_se_is_deterministic():
    hyps, refs = noisy_set(60)
    plain = bleu_chrf(hyps, refs)
    with_se = bleu_chrf(hyps, refs, bootstrap=True)
    assert with_se["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score == plain["bleu"]
    assert with_se["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score == plain["chrf"]
    assert with_se["bleu_signature"] == plain["bleu_signature"]  # no bootstrap fields added
    assert with_se["chrf_signature"] == plain["chrf_signature"]
    again = bleu_chrf(hyps, refs, bootstrap=True)
    replicates = again.pop("replicates")
    assert again == {k: v for k, v in with_se.items() if k != "replicates"}
    for name in ("bleu", "chrf"):
        assert np.array_equal(replicates[name], with_se["replicates"][name])


def test_replicates_are_paired_between_systems_so_a_difference_is_measured_more_precisely():
    """Two systems scored on the same test set draw the same resamples (the fixed seed): replicate
    i of both saw the same sentences. Their replicates are then positively correlated (a hard
    sentence is hard for both), and the paired difference has a smaller error than two
    independent errors would give: the same numbers as a plain loop over shared resamples."""
    rng = random.Random(7)
    hyps_a, refs = noisy_set(80, seed=1)
    # System b: system a with one word in ten changed (a close neighbour, like two checkpoints).
    hyps_b = [" ".join(w if rng.random() < 0.9 else rng.choice(WORDS) for w in h.split())
              for h in hyps_a]
    a = bleu_chrf(hyps_a, refs, bootstrap=True)
    b = bleu_chrf(hyps_b, refs, bootstrap=True)
    for name in ("bleu", "chrf"):
        ra, rb = a["replicates"][name], b["replicates"][name]
        assert len(ra) == len(rb) == BOOTSTRAP_SAMPLES
        assert np.std(ra, ddof=1) == pytest.approx(a[f"{name}_se"])
        paired = np.std(ra - rb, ddof=1)
        assert np.corrcoef(ra, rb)[0, 1] > 0.5
        assert paired < 0.7 * math.hypot(a[f"{name}_se"], b[f"{name}_se"])
    metric = sacrebleu.metrics.BLEU()
    stats = [np.asarray(metric._extract_corpus_statistics(h, [refs])) for h in (hyps_a, hyps_b)]
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, 80, size=(BOOTSTRAP_SAMPLES, 80))
    loop = [[metric._compute_score_from_stats(s[rows].sum(0).tolist()).score for rows in draws]
            for s in stats]
    assert np.allclose(a["replicates"]["bleu"], loop[0]) and np.allclose(b["replicates"]["bleu"],
                                                                        loop[1])


def test_mean_and_ratio_replicates_rescore_the_same_resamples():
    values = np.arange(10, dtype=float)
    counts = resample_counts(10)
    assert counts.shape == (BOOTSTRAP_SAMPLES, 10) and np.all(counts.sum(1) == 10)
    assert np.allclose(mean_replicates(values), counts @ values / 10)
    assert np.std(mean_replicates(values), ddof=1) == pytest.approx(mean_se(values), rel=0.1)
    tokens = np.arange(1, 11)
    assert np.allclose(ratio_replicates(values, tokens), (counts @ values) / (counts @ tokens))
    assert np.std(ratio_replicates(values, tokens), ddof=1) == pytest.approx(
        ratio_se(values, tokens), rel=0.15)


def test_bootstrap_matrix_trick_equals_a_plain_resampling_loop():
    """The vectorised counts @ stats gives exactly the scores of resampling rows one by one."""
    hyps, refs = noisy_set(40)
    metric = sacrebleu.metrics.BLEU()
    stats = np.asarray(metric._extract_corpus_statistics(hyps, [refs]))
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(
        0, len(stats), size=(BOOTSTRAP_SAMPLES, len(stats)))
    scores = [metric._compute_score_from_stats(stats[rows].sum(0).tolist()).score
              for rows in draws]
    assert bootstrap_se(metric, stats) == pytest.approx(np.std(scores, ddof=1), rel=1e-12)


def test_bootstrap_se_agrees_with_sacrebleus_own_bootstrap_interval():
    """sacrebleu's n_bootstrap reports a 95% percentile half-width: about 1.96 SE."""
    hyps, refs = noisy_set(200, seed=3)
    own = sacrebleu.metrics.CHRF().corpus_score(hyps, [refs], n_bootstrap=1000)
    ours = bleu_chrf(hyps, refs, bootstrap=True)["chrf_se"]
    assert ours == pytest.approx(own._ci / 1.96, rel=0.15)


def test_perfect_translations_have_bleu_100_and_zero_se_noisy_ones_a_positive_se():
    _, refs = noisy_set(30)
    perfect = bleu_chrf(refs, refs, bootstrap=True)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert perfect["bleu_se"] == pytest.approx(0, abs=1e-9)  # up to rounding in exp(log p)
    assert perfect["chrf_se"] == pytest.approx(0, abs=1e-9)
    noisy = bleu_chrf(*noisy_set(30), bootstrap=True)
    assert noisy["bleu_se"] > 0.1 and noisy["chrf_se"] > 0.1


def test_cross_entropy_se_is_the_delta_method_se_of_the_token_weighted_ratio():
    # R = 16 / 8 = 2; residuals nll - R * tokens = [0, -1, 1, 0]; mean tokens 2.
    # SE = sqrt(sum d^2 / (n (n - 1))) / mean(tokens) = sqrt(2 / 12) / 2.
    assert ratio_se([2.0, 3.0, 7.0, 4.0], [1, 2, 3, 2]) == pytest.approx(math.sqrt(2 / 12) / 2)
    # Proportional sentences (every sentence at the same per-token NLL): no noise at all.
    assert ratio_se([3.0, 6.0, 9.0], [1, 2, 3]) == pytest.approx(0, abs=1e-15)


def test_cross_entropy_se_matches_a_sentence_bootstrap():
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 40, size=400)
    nll = tokens * rng.gamma(4, 0.5, size=400)  # per-token NLL varies from sentence to sentence
    draws = rng.integers(0, 400, size=(4000, 400))
    boot = nll[draws].sum(1) / tokens[draws].sum(1)
    assert ratio_se(nll, tokens) == pytest.approx(boot.std(ddof=1), rel=0.08)


def test_rouge_and_comet_se_is_std_over_sqrt_n():
    assert mean_se([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_se([0.5, 0.5, 0.5]) == 0
    hyps, refs = noisy_set(50)
    sentences = rouge_l_sentences(hyps, refs)
    assert len(sentences) == 50 and sum(sentences) / 50 == rouge_l(hyps, refs)
    assert mean_se(sentences) == pytest.approx(np.std(sentences, ddof=1) / math.sqrt(50))


@pytest.mark.parametrize("estimate", [
    lambda: evaluate_translation(None, None, [("ein Hund", "a dog")], None, None),
    lambda: evaluate_translation(None, None, [], None, None),
    lambda: mean_se([0.3]),
    lambda: ratio_se([2.0], [3]),
    lambda: bleu_chrf(["a dog"], ["a dog"], bootstrap=True),
])
def test_fewer_than_two_test_sentences_is_a_clear_error(estimate):
    with pytest.raises(ValueError, match=r"at least 2.*tasks\[\]\.test_examples"):
        estimate()


def test_a_trial_evaluation_logs_every_metric_with_its_se(tiny_spec_dict, tmp_path):
    """evaluate_translation on a tiny T5 with COMET through finetune.comet_scorer (the path
    outside Ray): every new key is a float, so a trial logs it as an MLflow metric."""
    import torch

    from raysweep.data.collators import seq2seq_batch
    from raysweep.data.sources import parallel_splits
    from raysweep.data.synthetic import Family
    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.finetune import comet_scorer
    from raysweep.model import build_model
    from raysweep.spec_loader import spec_from_dict

    torch.set_num_threads(1)
    tiny_spec_dict["tokenizer"]["train_documents"] = 400
    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    task = spec.tasks[0]
    tokenizer = train_tokenizer(spec)
    splits = parallel_splits(task, Family.of(spec), spec.source_file, "task", spec.base_dir)
    torch.manual_seed(0)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    result = evaluate_translation(model, tokenizer, splits.test, spec, task,
                                  comet_scorer(spec, None, None))

    new = ("bleu_se", "chrf_se", "rougeL_se", "cross_entropy_se", "comet_se", "test_sentences")
    assert all(type(result[k]) is float and math.isfinite(result[k]) for k in new)
    assert result["test_sentences"] == len(splits.test) == task.test_examples
    assert result["cross_entropy_se"] > 0 and result["comet_se"] > 0
    assert min(result[k] for k in new) >= 0
    # The token-weighted mean is still the batch-level sum / tokens it always was.
    batch = seq2seq_batch(splits.test, tokenizer, task.max_length)
    with torch.no_grad():
        logits = model(**batch).logits
    total = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                              ignore_index=-100, reduction="sum")
    expected = total.item() / int((batch["labels"] != -100).sum())
    assert result["cross_entropy"] == pytest.approx(expected, rel=1e-5)
    # Every metric's paired replicates, on the same resamples, spread as its SE says.
    replicates = result["replicates"]
    assert set(replicates) == {"bleu", "chrf", "rougeL", "cross_entropy", "comet"}
    for name, values in replicates.items():
        assert len(values) == BOOTSTRAP_SAMPLES
        assert np.std(values, ddof=1) == pytest.approx(result[f"{name}_se"], rel=0.2, abs=1e-9)
