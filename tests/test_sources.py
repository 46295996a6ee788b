"""Data sources: every local format read through `datasets`, and one clear SpecError per bad
input."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import error_paragraph

from raysweep.data.sources import monolingual_source, parallel_splits
from raysweep.data.synthetic import Family
from raysweep.spec import SpecError, TaskSpec, TokenizerSpec
from raysweep.spec_loader import load_spec

WORDS = ["river", "stone", "light", "house", "green", "small", "old", "quick", "bird", "tree",
         "water", "cold", "bright", "north", "song", "field"]
MONO_FIELD, TASK_FIELD = "pretrain.mixture[0].source", "tasks[0].data"


def sentence(i: int, words: int = 8) -> str:
    """A distinct, deterministic sentence (the index makes every one unique)."""
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(words)) + f" {i}"


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def read_mono(path, shard: int = 0, num_shards: int = 1) -> list[str]:
    source = monolingual_source(f"file:{path}", "en", Family(), MONO_FIELD, "spec.yaml")
    return list(source.documents(shard, num_shards))


def task(data: str, test: int = 1, dev: int = 1, **kw) -> TaskSpec:
    return TaskSpec("en-de", "en", "de", data, (100,), test_examples=test, dev_examples=dev, **kw)


def splits_of(path, seed: int = 0, **kw):
    return parallel_splits(task(f"file:{path}", **kw), Family(seed=seed), "spec.yaml", TASK_FIELD)


# --------------------------------------------------------------------------------------------------
# Monolingual formats

DOCS = [sentence(i) for i in range(6)]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".txt"])
def test_monolingual_formats_read_every_document(tmp_path, suffix):
    path = tmp_path / f"mono{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, [{"text": d, "url": f"u{i}"} for i, d in enumerate(DOCS)])
    elif suffix == ".json":  # one JSON array of rows
        path.write_text(json.dumps([{"text": d} for d in DOCS], indent=1))
    elif suffix == ".parquet":
        pq.write_table(pa.table({"text": DOCS, "id": list(range(len(DOCS)))}), path)
    else:  # blank (and whitespace-only) lines are not documents
        path.write_text(f"{DOCS[0]}\n\n{DOCS[1]}\n   \n" + "\n".join(DOCS[2:]) + "\n")
    assert read_mono(path) == DOCS


def test_pretraining_stream_that_runs_out_stops_with_a_clear_error(tmp_path, write_spec,
                                                                   tiny_spec_dict):
    """A source that runs dry mid-run (a hub stream validation cannot count) stops pretraining
    with a message naming it: repeating data would break the laws' assumptions."""
    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.pretrain.batches import rank_batches

    spec = _file_spec(tmp_path, write_spec, tiny_spec_dict, en_docs=30)  # not validated: too small
    source = monolingual_source("file:en.jsonl", "en", Family(), MONO_FIELD, "spec.yaml",
                                str(tmp_path))
    assert len(list(source.documents(0, 1))) == 30  # the source itself just ends
    with pytest.raises(RuntimeError, match=r"pretrain.mixture\[0\] \(file:en.jsonl\) ran out of "
                                           r"documents on rank 0 at step \d+.*no data is repeated"):
        for _ in rank_batches(spec, train_tokenizer(spec), rank=0, world=2):
            pass


@pytest.mark.parametrize("num_shards", [2, 3])
def test_rank_shards_of_a_file_are_disjoint_and_cover_it(tmp_path, num_shards):
    docs = [sentence(i) for i in range(11)]
    path = tmp_path / "mono.jsonl"
    write_jsonl(path, [{"text": d} for d in docs])
    shards = [read_mono(path, rank, num_shards) for rank in range(num_shards)]
    assert all(shards)
    seen = [d for shard in shards for d in shard]
    assert len(seen) == len(set(seen)) == len(docs)  # disjoint
    assert set(seen) == set(docs)  # together: the whole file


# --------------------------------------------------------------------------------------------------
# Parallel formats

PAIRS = [(f'He said "{sentence(0, 4)}"', f'"{sentence(50, 5)}'), ("NA", "null")] + [
    (sentence(i, 5), sentence(i + 100, 6)) for i in range(2, 7)]


def write_parallel(path, layout: str) -> None:
    if layout == "jsonl-translation":
        write_jsonl(path, [{"translation": {"de": t, "en": s}} for s, t in PAIRS])
    elif layout == "jsonl-flat":
        write_jsonl(path, [{"source": s, "target": t} for s, t in PAIRS])
    elif layout == "json-array":
        path.write_text(json.dumps([{"translation": {"en": s, "de": t}} for s, t in PAIRS]))
    elif layout == "tsv":  # quotes are text, and NA / null stay strings
        path.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    elif layout == "parquet-translation":
        rows = [{"en": s, "de": t} for s, t in PAIRS]
        pq.write_table(pa.table({"translation": rows}), path)
    else:
        pq.write_table(pa.table({"source": [s for s, _ in PAIRS], "target": [t for _, t in PAIRS]}),
                       path)


@pytest.mark.parametrize("layout, suffix", [
    ("jsonl-translation", ".jsonl"), ("jsonl-flat", ".jsonl"), ("json-array", ".json"),
    ("tsv", ".tsv"), ("parquet-translation", ".parquet"), ("parquet-flat", ".parquet")])
def test_parallel_formats_read_every_pair_verbatim(tmp_path, layout, suffix):
    path = tmp_path / f"pairs{suffix}"
    write_parallel(path, layout)
    splits = splits_of(path, test=1, dev=2)
    assert splits.test == [PAIRS[0]]
    assert splits.dev == PAIRS[1:3]
    assert sorted(splits.train) == sorted(PAIRS[3:])


def test_training_order_is_seeded_and_reproducible(tmp_path):
    path = tmp_path / "pairs.jsonl"
    pairs = [(sentence(i), sentence(i + 500)) for i in range(40)]
    write_jsonl(path, [{"source": s, "target": t} for s, t in pairs])
    first, again, other = splits_of(path, seed=1), splits_of(path, seed=1), splits_of(path, seed=2)
    assert first.train == again.train
    assert sorted(first.train) == sorted(other.train) == sorted(pairs[2:])
    assert first.train != other.train and first.train != pairs[2:]


def test_training_pairs_leaking_dev_or_test_sources_are_dropped(tmp_path):
    path = tmp_path / "pairs.jsonl"
    pairs = [(sentence(i), sentence(i + 500)) for i in range(12)]
    # Two training pairs repeat the test and dev source sentences (with other targets).
    rows = pairs + [(pairs[0][0], "another target"), (pairs[1][0] + " ", "yet another")]
    write_jsonl(path, [{"source": s, "target": t} for s, t in rows])
    splits = splits_of(path, seed=3)
    assert splits.test == [pairs[0]] and splits.dev == [pairs[1]]
    assert sorted(splits.train) == sorted(pairs[2:])
    assert splits_of(path, seed=3).train == splits.train


# --------------------------------------------------------------------------------------------------
# Bad input: one paragraph naming the field, the file and the line


def assert_one_paragraph(message: str, field: str, name: str, expected: list[str]) -> None:
    assert f"`{field}`" in message and name in message
    assert message.startswith("spec.yaml: ") and message.endswith("nothing was written.")
    assert "\n" not in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize("name, content, expected", [
    ("bad.jsonl", '{"text": "a b"}\n\n{"text": oops}\n', ["line 3 is not valid JSON", "oops"]),
    ("bad.jsonl", '{"text": "a b"}\n["a", "b"]\n', ["line 2 is not a JSON object"]),
    ("bad.jsonl", '{"text": "a b"}\n\n{"body": "c d"}\n',
     ['line 3 has no "text" field', "['body']"]),
    ("bad.jsonl", '{"text": "a b"}\n{"text": ""}\n', ['line 2 has an empty "text"']),
    ("bad.jsonl", '{"text": "a b"}\n{"text": null}\n', ['line 2 has no "text" field']),
    ("bad.json", '[{"text": "a"},\n {"text": "b"\n]', ["line 3 is not valid JSON"]),
    ("bad.jsonl", "", ["has no documents"]),
    ("bad.txt", "\n  \n\n", ["has no documents"]),
    ("bad.csv", "text\nsome words\n", ["expected a .jsonl, .json, .parquet, .txt file"]),
])
def test_bad_monolingual_file_names_field_file_and_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SpecError) as err:
        read_mono(path)  # errors may come when opening or, streamed, when reading
    assert_one_paragraph(str(err.value), MONO_FIELD, name, expected)
    # Validation's check of every row (in Arrow batches) finds the same row, the same way.
    with pytest.raises(SpecError) as checked:
        monolingual_source(f"file:{path}", "en", Family(), MONO_FIELD, "spec.yaml").check_rows()
    assert str(checked.value) == str(err.value)


def test_the_check_of_every_row_passes_good_files_whole(tmp_path):
    for name, content in (("blank_lines.txt", "a b\n\n  \nc d\n"),
                          ("docs.jsonl", "".join(f'{{"text": "{d}"}}\n' for d in DOCS))):
        (tmp_path / name).write_text(content)
        source = monolingual_source(f"file:{tmp_path / name}", "en", Family(), MONO_FIELD,
                                    "spec.yaml")
        source.check_rows()  # a .txt may have blank lines; nothing to report in either
        assert list(source.documents(0, 1))


def test_bad_row_in_a_later_shard_is_located_in_the_file(tmp_path):
    path = tmp_path / "mono.jsonl"
    write_jsonl(path, [{"text": d} for d in DOCS] + [{"text": "   "}] + [{"text": "x y"}])
    with pytest.raises(SpecError, match=r"line 7 has an empty \"text\""):
        read_mono(path, shard=0, num_shards=2)  # rows 1, 3, 5, 7 go to rank 0


def test_bad_parquet_row_is_named_by_row(tmp_path):
    path = tmp_path / "mono.parquet"
    pq.write_table(pa.table({"text": ["a b", "c d", None]}), path)
    with pytest.raises(SpecError, match=r"mono.parquet' row 3 has no \"text\" field"):
        read_mono(path)


def _row(src: str, tgt: str) -> str:
    return json.dumps({"translation": {"en": src, "de": tgt}}) + "\n"


@pytest.mark.parametrize("name, content, expected", [
    ("bad.jsonl", _row("a", "b") + '{"translation": {"en": "c", "fr": "d"}}\n',
     ["line 2 has a \"translation\" with languages ['en', 'fr']", "'en' (source_lang)",
      "'de' (target_lang)"]),
    ("bad.jsonl", _row("a", "b") + '{"src": "c", "tgt": "d"}\n',
     ["line 2 has fields ['src', 'tgt']"]),
    ("bad.jsonl", _row("a", "b") + "\n" + _row("c", " "),
     ['line 3 has an empty or missing "translation.de"']),
    ("bad.jsonl", '{"source": "a", "target": "b"}\n{"source": "c"}\n',
     ['line 2 has an empty or missing "target"']),
    ("bad.jsonl", _row("a", "b") + "{broken\n", ["line 2 is not valid JSON"]),
    ("bad.tsv", "a\tb\nc\td\te\nf\tg\n", ["line 2 has 3 tab-separated columns"]),
    ("bad.tsv", "a\tb\n\nc d without a tab\n", ["line 3 has 1 tab-separated columns"]),
    ("bad.tsv", 'a\tb\nc\t\n', ['line 2 has an empty or missing "target"']),
    ("bad.tsv", "\n\n", ["has no rows"]),
    ("bad.parquet", None, ["has no rows"]),
    ("bad.xml", "<a/>", ["expected a .jsonl, .json, .parquet, .tsv file"]),
])
def test_bad_parallel_file_names_field_file_and_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"source": pa.array([], pa.string())}), path)
    else:
        path.write_text(content)
    with pytest.raises(SpecError) as err:
        splits_of(path, test=1, dev=0)
    assert_one_paragraph(str(err.value), TASK_FIELD, name, expected)


# --------------------------------------------------------------------------------------------------
# Hub datasets (offline: a made-up id fails fast; a local folder stands in for a hub dataset)


def test_unloadable_hub_dataset_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        monolingual_source("hf:raysweep-no-such-dataset-xyz:en", None, Family(), MONO_FIELD,
                           "spec.yaml")
    message = str(err.value)
    assert f"`{MONO_FIELD}`" in message and "'raysweep-no-such-dataset-xyz'" in message
    assert "config 'en'" in message and "could not be loaded" in message
    assert "`file:` or `synthetic:` source" in message and message.endswith("nothing was written.")
    with pytest.raises(SpecError, match=r"`tasks\[0\].data`: the hub dataset "
                                        r"'raysweep-no-such-dataset-xyz' \(config 'de-en'\)"):
        parallel_splits(task("hf:raysweep-no-such-dataset-xyz:de-en"), Family(), "spec.yaml",
                        TASK_FIELD)


def _hub_folder(tmp_path, splits: dict[str, list[tuple[str, str]]]):
    folder = tmp_path / "hub"
    folder.mkdir()
    for split, pairs in splits.items():
        write_jsonl(folder / f"{split}.jsonl",
                    [{"translation": {"en": s, "de": t}} for s, t in pairs])
    return folder


def test_hub_splits_take_a_seeded_shuffled_train_prefix_without_leaks(tmp_path):
    test = [(sentence(i), sentence(i + 500)) for i in range(3)]
    dev = [(sentence(i), sentence(i + 500)) for i in range(3, 6)]
    train = [(sentence(i), sentence(i + 500)) for i in range(6, 60)] + [(test[0][0], "leak"),
                                                                         (dev[1][0], "leak")]
    folder = _hub_folder(tmp_path, {"train": train, "validation": dev, "test": test})
    spec_task = task(f"hf:{folder}", test=2, dev=3, train_examples=56)
    splits = parallel_splits(spec_task, Family(), "spec.yaml", TASK_FIELD)
    assert splits.test == test[:2] and splits.dev == dev
    assert sorted(splits.train) == sorted(train[:-2])  # the two leaked pairs are dropped
    assert splits.train != train[:-2]  # shuffled
    smaller = parallel_splits(task(f"hf:{folder}", test=2, dev=3, train_examples=10), Family(),
                              "spec.yaml", TASK_FIELD)
    assert len(smaller.train) == 10 and set(smaller.train) <= set(train[:-2])
    assert smaller.train == parallel_splits(task(f"hf:{folder}", test=2, dev=3, train_examples=10),
                                            Family(), "spec.yaml", TASK_FIELD).train


def test_hub_dataset_without_a_validation_split_is_named(tmp_path):
    pairs = [(sentence(i), sentence(i + 500)) for i in range(8)]
    folder = _hub_folder(tmp_path, {"train": pairs, "test": pairs[:2]})
    with pytest.raises(SpecError, match=r"`tasks\[0\].data`: .*splits \['test', 'train'\].*"
                                        r"missing: validation"):
        parallel_splits(task(f"hf:{folder}"), Family(), "spec.yaml", TASK_FIELD)


# --------------------------------------------------------------------------------------------------
# Enough pretraining text for the schedule (validated before anything is written)


def _file_spec(tmp_path, write_spec, data: dict, en_docs: int):
    """The tiny spec (conftest) with file sources only: en from a JSONL file of `en_docs`
    documents."""
    write_jsonl(tmp_path / "en.jsonl", [{"text": sentence(i, 12)} for i in range(en_docs)])
    write_jsonl(tmp_path / "de.jsonl", [{"text": sentence(i + 7000, 12)} for i in range(2000)])
    write_jsonl(tmp_path / "pairs.jsonl",
                [{"translation": {"en": sentence(i), "de": sentence(i + 3000)}}
                 for i in range(300)])
    data["tokenizer"]["train_documents"] = 40  # 10 per stream: the small file has more than that
    data["pretrain"]["mixture"] = [{"source": "file:en.jsonl", "weight": 0.5, "language": "en"},
                                   {"source": "file:de.jsonl", "weight": 0.5, "language": "de"}]
    data["tasks"][0].update(data="file:pairs.jsonl", finetune_tokens=[500])
    return load_spec(write_spec(data))


def test_a_source_without_a_language_gives_an_unknown_alignment_score_not_zero(
        tmp_path, write_spec, tiny_spec_dict):
    from raysweep.answer import answer_markdown
    from raysweep.data.mixture import UNKNOWN_ALIGNMENT, alignment_score
    from raysweep.preflight import plan_text

    spec = _file_spec(tmp_path, write_spec, tiny_spec_dict, en_docs=2000)
    task = spec.tasks[0]
    assert alignment_score(spec.pretrain.mixture, task) == pytest.approx(1.0)  # languages given
    without = dataclasses.replace(spec.pretrain.mixture[1], language=None)  # file:de.jsonl
    spec = dataclasses.replace(spec, pretrain=dataclasses.replace(
        spec.pretrain, mixture=(spec.pretrain.mixture[0], without)))
    assert alignment_score(spec.pretrain.mixture, task) is None
    assert f"alignment score {UNKNOWN_ALIGNMENT}" in plan_text(spec)
    assert f"(alignment score of the mixture {UNKNOWN_ALIGNMENT})" in answer_markdown(spec, [])


def test_pretraining_file_too_small_for_the_schedule_fails_validation(tmp_path, write_spec,
                                                                     tiny_spec_dict):
    from raysweep.data.mixture import batch_source
    from raysweep.preflight import check

    spec = _file_spec(tmp_path, write_spec, tiny_spec_dict, en_docs=30)
    pre = spec.pretrain
    steps = sum(batch_source(spec, s) == 0 for s in range(1, 8192 // (8 * 32) + 1))
    needed = steps * (8 // 2) * 32
    with pytest.raises(SpecError) as err:
        check(spec)
    message = str(err.value)
    assert "`pretrain.mixture[0].source`: file:en.jsonl" in message
    assert f"needs {needed:,} from it" in message and f"{steps} of 32 steps" in message
    assert "pretrain.checkpoints" in message and "pretrain.mixture[0].weight" in message
    assert message.endswith("nothing was written.")
    assert not (tmp_path / "runs").exists() and pre.workers == 2


def test_pretraining_file_large_enough_passes_validation(tmp_path, write_spec, tiny_spec_dict):
    from raysweep.preflight import check

    spec = _file_spec(tmp_path, write_spec, tiny_spec_dict, en_docs=2000)
    tokenizer, available = check(spec)
    assert tokenizer is not None and available["en-de"] >= 500


def test_offline_validation_still_reads_every_row_of_a_file(tmp_path, write_spec, tiny_spec_dict):
    from raysweep.preflight import check

    spec = _file_spec(tmp_path, write_spec, tiny_spec_dict, en_docs=50)
    rows = [{"text": sentence(i + 7000, 12)} for i in range(40)] + [{"body": "no text"}]
    write_jsonl(tmp_path / "de.jsonl", rows)
    spec = dataclasses.replace(spec, tokenizer=TokenizerSpec(kind="hub", hub_id="google/mt5-base"))
    with pytest.raises(SpecError,
                       match=r"`pretrain.mixture\[1\].source`: '.*de.jsonl' line 41 has no"):
        check(spec, offline=True)  # no tokenizer: nothing counted, but the bad row is found


def test_bad_file_on_the_command_line_is_one_paragraph(tmp_path, write_spec, tiny_spec_dict,
                                                       capsys):
    from raysweep.cli import main

    _file_spec(tmp_path, write_spec, tiny_spec_dict, en_docs=50)
    (tmp_path / "pairs.jsonl").write_text(_row("a", "b")
                                          + '{"translation": {"en": "c" "de": "d"}}\n')
    assert main(["validate", str(tmp_path / "spec.yaml")]) == 2
    err = error_paragraph(capsys.readouterr().err)  # datasets' own log and bars silenced
    assert "`tasks[0].data`" in err and "pairs.jsonl' line 2 is not valid JSON" in err
    assert not (tmp_path / "runs").exists()


def test_a_task_file_rewritten_with_its_old_mtime_is_read_anew(tmp_path):
    """datasets caches a local file by path and mtime: the new rows must be read all the same."""
    import os

    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{sentence(i)}\t{sentence(i + 50)}\n" for i in range(6)))
    before = splits_of(path)
    stat = path.stat()
    path.write_text("".join(f"{sentence(i + 100)}\t{sentence(i + 150)}\n" for i in range(6)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p` of an older edit would
    after = splits_of(path)
    assert after.test != before.test and after.test[0][0] in {sentence(i + 100) for i in range(6)}
