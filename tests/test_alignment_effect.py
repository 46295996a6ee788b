"""The reason the synthetic languages exist: offline, pretraining on an aligned mixture must help
translation more than pretraining on a misaligned one (Isik et al.'s central finding).

Tiny model, tiny budgets, one thread, fixed seeds: the same pipeline pieces the sweep uses
(rank_batches for pretraining, finetune() for the trial, cross_entropy() for the dev score), with
a plain single-process optimiser loop in place of the DeepSpeed engine.
"""

from __future__ import annotations

import copy

import torch
from conftest import TINY_SPEC

MODEL = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 16}
MIXTURES = {
    "aligned": [{"source": "synthetic:en", "weight": 0.5}, {"source": "synthetic:de", "weight": 0.5}],
    "misaligned": [{"source": "synthetic:fr", "weight": 0.5}, {"source": "synthetic:ro", "weight": 0.5}],
    # Only used to train one tokenizer over all four languages, so that no mixture is favoured.
    "all": [{"source": f"synthetic:{code}", "weight": 0.25} for code in ("en", "de", "fr", "ro")],
}


def _spec(mixture: str, tmp_path):
    from raysweep.spec import spec_from_dict

    data = copy.deepcopy(TINY_SPEC)
    data["model"] = MODEL
    data["tokenizer"] = {"kind": "unigram", "vocab_size": 1000, "train_documents": 2000}
    data["pretrain"].update(mixture=MIXTURES[mixture], checkpoints=[640 * 1024], batch_size=16,
                            seq_len=64, lr=0.002, warmup_steps=20, workers=1)
    data["tasks"][0].update(finetune_tokens=[16000], lrs=[0.001, 0.003], steps=100, batch_size=16,
                            max_length=40, dev_examples=100, train_examples=2000)
    return spec_from_dict(data, base_dir=str(tmp_path))


def _pretrained(spec, tokenizer):
    from raysweep.data.pretraining import rank_batches
    from raysweep.model import build_model
    from raysweep.pretrain import inverse_sqrt

    torch.manual_seed(spec.seed)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt(spec.pretrain.warmup_steps))
    for _, _, batch in rank_batches(spec, tokenizer, rank=0, world=1):
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    return model


def _dev_cross_entropy(spec, tokenizer, pretrained) -> float:
    """Finetune a copy of the model at each lr of the task; the best dev cross-entropy (the
    sweep's learning-rate choice)."""
    from raysweep.data.collators import finetune_prefix
    from raysweep.data.sources import parallel_splits
    from raysweep.data.synthetic import Family
    from raysweep.evaluate import cross_entropy
    from raysweep.finetune import finetune

    task = spec.tasks[0]
    splits = parallel_splits(task, Family.of(spec), "<test>", "tasks[0].data")
    train, _ = finetune_prefix(splits.train, tokenizer, task.max_length, task.finetune_tokens[0])
    scores = []
    for lr in task.lrs:
        model = copy.deepcopy(pretrained)
        torch.manual_seed(spec.seed)
        finetune(model, train, task, lr, tokenizer)
        scores.append(cross_entropy(model, splits.dev, tokenizer, task.max_length))
    return min(scores)


def test_aligned_pretraining_helps_translation_more_than_misaligned(tmp_path):
    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.model import build_model

    torch.set_num_threads(1)
    tokenizer = train_tokenizer(_spec("all", tmp_path))
    scores = {}
    for mixture in ("aligned", "misaligned"):
        spec = _spec(mixture, tmp_path)
        scores[mixture] = _dev_cross_entropy(spec, tokenizer, _pretrained(spec, tokenizer))
    spec = _spec("aligned", tmp_path)
    torch.manual_seed(spec.seed)
    scratch = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    scores["none"] = _dev_cross_entropy(spec, tokenizer, scratch)
    print("dev cross-entropy after finetuning:", {k: round(v, 3) for k, v in scores.items()})
    assert scores["aligned"] < scores["misaligned"] - 0.05, scores
    assert scores["aligned"] < scores["none"] - 0.03, scores
