"""Sweeps meant to be compared share one tokenizer: cross-entropy is in nats per token, so two
tokenizations would be two units. Either both train it on the same `tokenizer.train_sources`
(whatever their mixtures), or one reuses the other's saved folder (`tokenizer.kind: saved`), which
it copies into its own storage, a bucket too. Real tokenizers, tiny settings."""

from __future__ import annotations

import json

import pytest
from conftest import error_paragraph

from raysweep.cli import main
from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec, spec_from_dict

ALL_FOUR = [f"synthetic:{code}" for code in ("en", "de", "fr", "ro")]
# Roomy for the synthetic languages (~550 pieces learnt for 1000), as in the demos: the setting
# in which training on the same documents gives the same tokenizer (raysweep.data.tokenizer).
SHARED = {"kind": "unigram", "vocab_size": 1000, "train_documents": 800, "train_sources": ALL_FOUR}


def _mixture(*codes: str) -> list[dict]:
    return [{"source": f"synthetic:{code}", "weight": 1 / len(codes)} for code in codes]


def _en_de_ids(tokenizer, spec) -> list[list[int]]:
    """Ids of an en-de test pair, neither side seen in training."""
    from raysweep.data.synthetic import Family, parallel_pair

    return tokenizer(list(parallel_pair("en", "de", 10**6, Family.of(spec))))["input_ids"]


def _train(data: dict, tmp_path):
    from raysweep.data.tokenizer import train_tokenizer

    spec = spec_from_dict(data, base_dir=str(tmp_path))
    return spec, train_tokenizer(spec)


def test_other_mixtures_with_the_same_train_sources_train_the_same_tokenizer(tiny_spec_dict,
                                                                             tmp_path):
    tokenizers = {}
    for name, codes in (("aligned", ("en", "de")), ("misaligned", ("fr", "ro"))):
        data = {**tiny_spec_dict, "name": name, "tokenizer": SHARED}
        data["pretrain"] = {**data["pretrain"], "mixture": _mixture(*codes)}
        tokenizers[name] = _train(data, tmp_path)
    (spec, aligned), (_, misaligned) = tokenizers["aligned"], tokenizers["misaligned"]
    assert aligned.get_vocab() == misaligned.get_vocab()
    assert _en_de_ids(aligned, spec) == _en_de_ids(misaligned, spec)
    assert len(aligned.get_vocab()) > 300  # a real vocabulary, not just characters

    # The problem this solves: trained on their own mixtures, the two sweeps tokenize differently.
    own = {"kind": "unigram", "vocab_size": 1000, "train_documents": 800}
    _, own_fr_ro = _train({**tiny_spec_dict, "tokenizer": own,
                           "pretrain": {**tiny_spec_dict["pretrain"],
                                        "mixture": _mixture("fr", "ro")}},
                          tmp_path)
    assert own_fr_ro.get_vocab() != aligned.get_vocab()


def _saved_sweep(tiny_spec_dict, tmp_path):
    """Sweep `a` (en+de) has run: its tokenizer is saved in <tmp>/runs/a/tokenizer."""
    from raysweep.data.tokenizer import save_tokenizer, tokenizer_dir

    spec, tokenizer = _train({**tiny_spec_dict, "name": "a"}, tmp_path)
    save_tokenizer(spec, tokenizer)
    return spec, tokenizer_dir(spec)


def _reusing(tiny_spec_dict, path: str, **fields) -> dict:
    """Sweep `b`, on a misaligned mixture, pointed at a saved tokenizer folder."""
    data = {**tiny_spec_dict, "name": "b", "tokenizer": {"kind": "saved", "path": path}, **fields}
    data["pretrain"] = {**data["pretrain"], "mixture": _mixture("fr", "ro")}
    return data


def _model(folder) -> dict:
    return json.loads((folder / "tokenizer.json").read_text())["model"]


def test_a_sweep_reusing_a_saved_tokenizer_copies_and_loads_exactly_it(tiny_spec_dict, tmp_path,
                                                                       write_spec):
    import shutil

    from raysweep.data.tokenizer import (
        fetch_tokenizer,
        load_tokenizer,
        save_tokenizer,
        tokenizer_dir,
    )
    from raysweep.preflight import check

    spec_a, source = _saved_sweep(tiny_spec_dict, tmp_path)
    # Relative to the spec file, like every path of a spec.
    spec = load_spec(write_spec(_reusing(tiny_spec_dict, "runs/a/tokenizer")))
    tokenizer, _ = check(spec)  # what `raysweep run` does first, then it saves the tokenizer
    save_tokenizer(spec, tokenizer)

    own = tokenizer_dir(spec)
    assert own != source and (own / "tokenizer_config.json").is_file()
    loaded, original = load_tokenizer(fetch_tokenizer(spec)), load_tokenizer(source)
    assert loaded.get_vocab() == original.get_vocab()
    assert _en_de_ids(loaded, spec) == _en_de_ids(original, spec_a)
    assert _model(own) == _model(source)  # same pieces, same scores, same order

    # The sweep now holds its own copy: the source is not needed to resume or report.
    shutil.rmtree(source)
    assert load_spec(spec.source_file).tokenizer.path == "runs/a/tokenizer"


@pytest.mark.parametrize("make, expected", [
    (lambda folder: None, "is not a folder"),
    (lambda folder: folder.mkdir(parents=True),
     "holds no saved tokenizer (no tokenizer_config.json"),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_saved_tokenizer_is_one_paragraph_naming_field_and_path(
        tiny_spec_dict, write_spec, tmp_path, capsys, make, expected, command):
    folder = tmp_path.resolve() / "runs" / "a" / "tokenizer"  # as the spec resolves it
    make(folder)
    path = write_spec(_reusing(tiny_spec_dict, "runs/a/tokenizer"))
    before = sorted(tmp_path.rglob("*"))
    assert main([command, str(path)]) == 2
    err = error_paragraph(capsys.readouterr().err)  # one paragraph
    assert f"{path}: field `tokenizer.path`: {str(folder)!r} {expected}" in err
    assert ("Give a saved tokenizer folder, such as another sweep's <storage>/<sweep>/tokenizer"
            in err)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_a_folder_with_a_broken_tokenizer_is_refused_before_anything_is_written(
        tiny_spec_dict, write_spec, tmp_path, capsys):
    _, source = _saved_sweep(tiny_spec_dict, tmp_path)
    (source / "tokenizer.json").write_text("{not json")
    path = write_spec(_reusing(tiny_spec_dict, str(source)))  # an absolute path works too
    assert main(["validate", str(path)]) == 2
    err = error_paragraph(capsys.readouterr().err)
    assert f"field `tokenizer.path`: {str(source)!r} holds no tokenizer that loads" in err
    assert not (tmp_path / "runs" / "b").exists()


def test_a_saved_tokenizer_without_sentinels_is_refused(tiny_spec_dict, tmp_path):
    from transformers import ByT5Tokenizer

    from raysweep.data.tokenizer import train_tokenizer

    ByT5Tokenizer(extra_ids=0).save_pretrained(str(tmp_path / "bytes"))
    spec = spec_from_dict(_reusing(tiny_spec_dict, "bytes"), base_dir=str(tmp_path))
    with pytest.raises(SpecError, match="without T5's sentinel tokens <extra_id_0>"):
        train_tokenizer(spec)


@pytest.mark.parametrize("tokenizer, expected", [
    ({"kind": "saved"}, "`tokenizer.path` must name a saved tokenizer folder when tokenizer.kind "
                        "is saved"),
    ({"kind": "unigram", "path": "runs/a/tokenizer"}, "`tokenizer.path` is only read when "
                                                      "tokenizer.kind is saved"),
    ({"kind": "byt5", "train_sources": ALL_FOUR}, "`tokenizer.train_sources` is only used when "
                                                  "tokenizer.kind is unigram"),
    ({"kind": "saved", "path": "s3://bucket/sweeps/a/tokenizer"}, "is a bucket URI"),
    ({"kind": "unigram", "train_sources": ["en"]}, "`tokenizer.train_sources[0]` is 'en', expected "
                                                   "a source"),
])
def test_tokenizer_fields_that_would_be_ignored_or_cannot_be_read_are_refused(
        tiny_spec_dict, tmp_path, tokenizer, expected):
    with pytest.raises(SpecError, match="nothing was written") as err:
        spec_from_dict({**tiny_spec_dict, "tokenizer": tokenizer}, base_dir=str(tmp_path))
    assert expected in str(err.value)


@pytest.fixture
def s3_bucket(tmp_path, monkeypatch):
    """An S3 bucket served by moto on 127.0.0.1 (no network), reached through pyarrow's S3 client
    as on a cluster (tests/test_bucket_storage.py runs a whole sweep on one)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                        "RAYSWEEP_CACHE": str(tmp_path / "head-cache")}.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket="raysweep-test")
    yield "s3://raysweep-test/sweeps"
    server.stop()


def test_a_bucket_sweep_reusing_a_saved_tokenizer_shares_it_with_every_node(
        s3_bucket, tiny_spec_dict, tmp_path, monkeypatch):
    from raysweep.data.tokenizer import fetch_tokenizer, save_tokenizer, train_tokenizer

    _, source = _saved_sweep(tiny_spec_dict, tmp_path)
    spec = spec_from_dict(_reusing(tiny_spec_dict, str(source), storage=s3_bucket,
                                   tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"))
    save_tokenizer(spec, train_tokenizer(spec))  # on the head: into the bucket

    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path / "worker-cache"))  # a fresh node
    copy = fetch_tokenizer(spec)
    assert str(copy).startswith(str(tmp_path / "worker-cache"))
    assert _model(copy) == _model(source)
