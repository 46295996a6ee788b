"""Evaluation of a finetuned model: decoding, BLEU/chrF (sacrebleu), ROUGE-L, cross-entropy, COMET.

Decisions recorded with every result (the paper leaves them open):
- BLEU and chrF are corpus-level sacrebleu scores; the signature is logged with each trial.
- ROUGE-L uses a Unicode-aware tokenizer: rouge-score's default drops every non-ASCII letter,
  which would silently wreck German, French and Romanian scores.
- Downstream cross-entropy is the mean per-token negative log-likelihood (nats) of the reference
  under teacher forcing, padding excluded.
"""

from __future__ import annotations

import math
import re

import torch

from raysweep.data.collators import seq2seq_batch


class UnicodeWordTokenizer:
    """Lowercased runs of Unicode letters/digits: 'Über das Café!' -> ['über', 'das', 'café']."""

    _word = re.compile(r"\w+", re.UNICODE)

    def tokenize(self, text: str) -> list[str]:
        return self._word.findall(text.lower())


def rouge_l(hypotheses: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeWordTokenizer())
    scores = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]
    return sum(scores) / max(len(scores), 1)


def bleu_chrf(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> dict:
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    chrf = sacrebleu.metrics.CHRF()
    return {
        "bleu": bleu.corpus_score(hypotheses, [references]).score,
        "chrf": chrf.corpus_score(hypotheses, [references]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


@torch.no_grad()
def cross_entropy(model, pairs: list[tuple[str, str]], tokenizer, max_length: int,
                  batch_size: int = 32) -> float:
    """Mean per-token NLL (nats) of the references given the sources, teacher-forced."""
    model.eval()
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        batch = seq2seq_batch(pairs[start:start + batch_size], tokenizer, max_length)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                                 ignore_index=-100, reduction="sum")
        total_loss += loss.item()
        total_tokens += int((batch["labels"] != -100).sum())
    return total_loss / max(total_tokens, 1)


@torch.no_grad()
def translate(model, sources: list[str], tokenizer, max_length: int, max_new_tokens: int,
              num_beams: int = 1, batch_size: int = 32) -> list[str]:
    model.eval()
    outputs = []
    for start in range(0, len(sources), batch_size):
        encoded = tokenizer(sources[start:start + batch_size], max_length=max_length,
                            truncation=True, padding=True, return_tensors="pt")
        generated = model.generate(**encoded, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                   do_sample=False)
        outputs += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [o.strip() for o in outputs]


def evaluate_translation(model, tokenizer, test: list[tuple[str, str]], spec, task,
                         score_comet=None) -> dict:
    """All test metrics of one finetuned model. Values are floats; signatures are strings.
    `score_comet(sources, hypotheses, references)` returns COMET's system score (the shared
    scorer actor in a sweep, raysweep/scorer.py)."""
    ev = spec.evaluation
    sources = [s for s, _ in test]
    references = [t for _, t in test]
    hypotheses = translate(model, sources, tokenizer, task.max_length, ev.max_new_tokens,
                           ev.num_beams)
    result = bleu_chrf(hypotheses, references, ev.bleu_tokenize)
    result["rougeL"] = rouge_l(hypotheses, references)
    result["cross_entropy"] = cross_entropy(model, test, tokenizer, task.max_length)
    if score_comet is not None:
        result["comet"] = score_comet(sources, hypotheses, references)
    for name in ("bleu", "chrf", "rougeL", "cross_entropy", "comet"):
        if name in result and not math.isfinite(result[name]):
            raise FloatingPointError(f"metric {name} is not finite ({result[name]})")
    result["examples"] = [{"source": s, "reference": r, "hypothesis": h}
                          for s, r, h in list(zip(sources, references, hypotheses))[:5]]
    return result
