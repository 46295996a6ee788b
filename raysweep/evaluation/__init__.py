"""Scoring a finetuned model on the test set.

    metrics.py      BLEU and chrF (sacrebleu), ROUGE-L, cross-entropy, each with its standard
                    error and paired bootstrap replicates; decoding
    comet_model.py  loading a COMET model (hub id, local checkpoint, tiny-local) and scoring
    scorer.py       CometScorer: one actor per node holds the COMET model for every trial on it
    tiny_comet.py   the offline stand-in model `tiny-local` (demos and tests)
    comet_runtime.py  importing and running unbabel-comet quietly (shared by the two above)
"""
