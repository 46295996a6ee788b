"""Property-based fuzzing of data files (hypothesis, derandomized): whatever a task's or a
pretraining source's local file holds (malformed lines, missing or mistyped keys, wrong columns,
other encodings, binary junk), reading it gives its rows or one SpecError paragraph that names the
spec field and the file; never another exception. A hang would be caught by pytest-timeout."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability import record_cases

from raysweep.spec import SpecError

pytestmark = pytest.mark.fault

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
OUTCOMES = {"read": 0, "clear errors": 0}

words = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
texts = words.filter(lambda w: w.strip() and "\t" not in w and "\n" not in w and "\r" not in w)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | words,
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(words, inner, max_size=3), max_leaves=6)
# Rows as the formats want them...
good_rows = {
    "parallel": st.fixed_dictionaries({"source": texts, "target": texts})
    | st.fixed_dictionaries({"translation": st.fixed_dictionaries({"en": texts, "de": texts})}),
    "monolingual": st.fixed_dictionaries({"text": texts}),
}
# ...and as they come out wrong: keys missing or misnamed, values of the wrong type, not objects.
bad_rows = st.one_of(
    st.fixed_dictionaries({"translation": st.dictionaries(st.sampled_from(["en", "de", "fr"]),
                                                          json_values, max_size=3)}),
    st.dictionaries(st.sampled_from(["source", "target", "translation", "text", "id"]), json_values,
                    max_size=3),
    json_values)


@st.composite
def lines_of(draw, good, broken):
    """A file that is mostly right, with up to three lines broken."""
    lines = draw(st.lists(good, min_size=4, max_size=12))
    for _ in range(draw(st.integers(0, 3))):
        lines[draw(st.integers(0, len(lines) - 1))] = draw(broken)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


def json_lines(kind: str):
    good = good_rows[kind].map(json.dumps)
    broken = st.one_of(bad_rows.map(json.dumps), good.map(lambda s: s[:len(s) // 2]), words,
                       st.just(""))
    return lines_of(good, broken)


tsv_text = lines_of(st.tuples(texts, texts).map("\t".join),
                    st.lists(words.filter(lambda w: "\t" not in w), max_size=4).map("\t".join))
txt_text = lines_of(texts, words)
encodings = st.sampled_from(["utf-8"] * 6 + ["latin-1", "utf-16", "utf-8-sig", "cp1252"])


@st.composite
def data_files(draw, kind: str):
    """(suffix, bytes) of a file a user might point a spec field at."""
    formats = [".jsonl", ".json", ".tsv" if kind == "parallel" else ".txt", ".parquet"]
    suffix = draw(st.sampled_from(formats))
    if suffix == ".parquet":
        return suffix, draw(st.binary(max_size=300))  # junk; real parquet tables: test_sources
    if suffix == ".json" and draw(st.booleans()):  # a JSON array instead of lines
        text = json.dumps(draw(st.lists(good_rows[kind] | bad_rows, max_size=8)))
    else:
        text = draw({".tsv": tsv_text, ".txt": txt_text}[suffix] if suffix in (".tsv", ".txt")
                    else json_lines(kind))
    content = text.encode(draw(encodings), errors="replace")
    if draw(st.integers(0, 9)) == 0:  # now and then, random bytes spliced in
        junk, at = draw(st.binary(min_size=1, max_size=20)), draw(st.integers(0, len(content)))
        content = content[:at] + junk + content[at:]
    return suffix, content


def check_outcome(read, path, field: str) -> None:
    try:
        read()
        OUTCOMES["read"] += 1
        event("read")
    except SpecError as err:
        OUTCOMES["clear errors"] += 1
        event("SpecError")
        message = str(err)
        assert message.startswith(f"spec.yaml: field `{field}`") and str(path) in message, message
        assert "\n" not in message.strip() and "Traceback" not in message, message


@pytest.fixture(scope="module", autouse=True)
def record_outcomes():
    yield
    record_cases("malformed data files (hypothesis)", OUTCOMES)


def written(file: tuple[str, bytes], folder, stem: str):
    suffix, content = file
    path = folder / f"{stem}{suffix}"
    path.write_bytes(content)
    return path


@SETTINGS
@given(file=data_files("parallel"))
def test_any_task_data_file_reads_or_gives_one_clear_error(file, tmp_path):
    from raysweep.data.sources import parallel_splits
    from raysweep.data.synthetic import Family
    from raysweep.spec import TaskSpec

    path = written(file, tmp_path, "pairs")
    task = TaskSpec("en-de", "en", "de", f"file:{path}", (100,), test_examples=1, dev_examples=1)
    check_outcome(lambda: parallel_splits(task, Family(), "spec.yaml", "tasks[0].data"), path,
                  "tasks[0].data")


@SETTINGS
@given(file=data_files("monolingual"))
def test_any_pretraining_file_reads_or_gives_one_clear_error(file, tmp_path):
    from raysweep.data.sources import monolingual_source
    from raysweep.data.synthetic import Family

    path = written(file, tmp_path, "docs")
    field = "pretrain.mixture[0].source"

    def read():
        source = monolingual_source(f"file:{path}", "en", Family(), field, "spec.yaml")
        documents = [list(source.documents(shard, 2)) for shard in range(2)]
        source.check_rows()  # validation's batched check passes what reading passes
        return documents

    check_outcome(read, path, field)
