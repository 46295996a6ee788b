"""Data sources behind one interface, named by a URI-like string in the spec.

    synthetic:LANG            monolingual stream of an offline synthetic language
    synthetic:SRC-TGT         parallel corpus of two synthetic languages
    file:PATH                 a local file read through `datasets` (JSONL, TSV, Parquet, text)
    hf:DATASET[:CONFIG]       a Hugging Face hub dataset (streamed for pretraining)

Monolingual sources yield documents for one shard of the workers; parallel sources give the
train/dev/test splits of a task. Local files and hub datasets go through the same `datasets`
code, so what works on a file works at cloud scale.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from raysweep.data import synthetic
from raysweep.spec import SpecError


@dataclass(frozen=True)
class SourceName:
    kind: str  # synthetic | file | hf
    location: str
    config: str | None = None

    @staticmethod
    def parse(text: str, field: str, where: str) -> SourceName:
        kind, _, rest = text.partition(":")
        if kind not in ("synthetic", "file", "hf") or not rest:
            raise SpecError(
                f"{where}: field `{field}` is {text!r}, expected a source such as "
                f"`synthetic:en`, `synthetic:en-de`, `file:data/train.jsonl` or `hf:wmt14:de-en`; "
                f"nothing was written.")
        if kind == "hf":
            location, _, config = rest.partition(":")
            return SourceName(kind, location, config or None)
        return SourceName(kind, rest)


def _resolve(path: str, base_dir: str | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _load_file(path: Path, field: str, where: str):
    """A local file as a `datasets.Dataset`, its format chosen by extension."""
    if not path.is_file():
        raise SpecError(f"{where}: field `{field}` names the data file {str(path)!r}, which does "
                        f"not exist. Create it or fix the path; nothing was written.")
    import datasets

    suffix = path.suffix.lower()
    builder, kwargs = {
        ".jsonl": ("json", {}), ".json": ("json", {}), ".parquet": ("parquet", {}),
        ".tsv": ("csv", {"delimiter": "\t", "column_names": ["source", "target"]}),
        ".txt": ("text", {}),
    }.get(suffix, (None, {}))
    if builder is None:
        raise SpecError(f"{where}: field `{field}` names {str(path)!r}; expected a .jsonl, .json, "
                        f".tsv, .parquet or .txt file; nothing was written.")
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as err:  # datasets raises many types for malformed files
        raise SpecError(f"{where}: field `{field}`: could not read {str(path)!r} as {builder} "
                        f"({type(err).__name__}: {' '.join(str(err).split())[:300]}); "
                        f"nothing was written.") from None


# --------------------------------------------------------------------------------------------------
# Monolingual


class MonolingualSource:
    """Documents of one language, readable as disjoint shards."""

    language: str | None

    def documents(self, shard: int, num_shards: int) -> Iterator[str]:
        raise NotImplementedError


class SyntheticMonolingual(MonolingualSource):
    def __init__(self, language: str, seed: int):
        self.language, self.seed = language, seed

    def documents(self, shard: int, num_shards: int) -> Iterator[str]:
        for index in itertools.count(shard, num_shards):
            yield synthetic.monolingual_document(self.language, index, self.seed)


class DatasetMonolingual(MonolingualSource):
    """A `datasets` dataset (local file or hub) with a `text` column."""

    def __init__(self, dataset, language: str | None, name: str):
        self.dataset, self.language, self.name = dataset, language, name

    def documents(self, shard: int, num_shards: int) -> Iterator[str]:
        from datasets.distributed import split_dataset_by_node

        # Works for in-memory and streamed (hub) datasets alike: each rank reads disjoint rows.
        for row in split_dataset_by_node(self.dataset, rank=shard, world_size=num_shards):
            yield row["text"]
        raise RuntimeError(f"pretraining source {self.name} ran out of documents: the laws assume "
                           f"no data is repeated, so add data or lower pretrain.checkpoints.")


def monolingual_source(text: str, language: str | None, seed: int, field: str, where: str,
                       base_dir: str | None = None) -> MonolingualSource:
    name = SourceName.parse(text, field, where)
    if name.kind == "synthetic":
        if "-" in name.location:
            raise SpecError(f"{where}: field `{field}` is {text!r}, a parallel source; "
                            f"pretraining needs a monolingual one such as `synthetic:en`; "
                            f"nothing was written.")
        return SyntheticMonolingual(name.location, seed)
    if name.kind == "file":
        dataset = _load_file(_resolve(name.location, base_dir), field, where)
        if "text" not in dataset.column_names:
            raise SpecError(f"{where}: field `{field}`: {name.location!r} has columns "
                            f"{dataset.column_names}; expected a `text` column; nothing was written.")
        return DatasetMonolingual(dataset, language, text)
    import datasets  # hub: streamed, so pretraining starts without downloading the corpus

    dataset = datasets.load_dataset(name.location, name.config, split="train", streaming=True)
    return DatasetMonolingual(dataset, language or name.config, text)


# --------------------------------------------------------------------------------------------------
# Parallel


@dataclass
class ParallelSplits:
    train: list[tuple[str, str]]  # in a deterministic shuffled order: D_f takes a prefix
    dev: list[tuple[str, str]]
    test: list[tuple[str, str]]


def parallel_splits(task, seed: int, where: str, field: str,
                    base_dir: str | None = None) -> ParallelSplits:
    """The task's splits. Test and dev come first and are disjoint from train by construction."""
    name = SourceName.parse(task.data, field, where)
    n_test, n_dev, n_train = task.test_examples, task.dev_examples, task.train_examples
    if name.kind == "synthetic":
        src, _, tgt = name.location.partition("-")
        if not tgt:
            raise SpecError(f"{where}: field `{field}` is {task.data!r}, expected a parallel "
                            f"source such as `synthetic:{task.source_lang}-{task.target_lang}`; "
                            f"nothing was written.")
        if (src, tgt) != (task.source_lang, task.target_lang):
            raise SpecError(f"{where}: field `{field}` is {task.data!r} but the task translates "
                            f"{task.source_lang} -> {task.target_lang}; nothing was written.")
        pairs = [synthetic.parallel_pair(src, tgt, i, seed) for i in range(n_test + n_dev + n_train)]
    elif name.kind == "file":
        dataset = _load_file(_resolve(name.location, base_dir), field, where)
        pairs = []
        for row in dataset:
            if "translation" in row:
                pairs.append((row["translation"][task.source_lang], row["translation"][task.target_lang]))
            else:
                pairs.append((row["source"], row["target"]))
    else:
        import datasets

        pairs_by_split = {}
        for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
            rows = datasets.load_dataset(name.location, name.config, split=hub_split)
            pairs_by_split[split] = [(r["translation"][task.source_lang],
                                      r["translation"][task.target_lang]) for r in rows]
        train = pairs_by_split["train"]
        random.Random(seed).shuffle(train)
        return ParallelSplits(train, pairs_by_split["dev"][:n_dev], pairs_by_split["test"][:n_test])
    if len(pairs) < n_test + n_dev + 1:
        raise SpecError(f"{where}: field `{field}`: {task.data!r} has {len(pairs)} pairs, fewer "
                        f"than test_examples + dev_examples + 1 = {n_test + n_dev + 1}; "
                        f"nothing was written.")
    test, dev, train = pairs[:n_test], pairs[n_test:n_test + n_dev], pairs[n_test + n_dev:]
    random.Random(seed).shuffle(train)
    return ParallelSplits(train, dev, test)
