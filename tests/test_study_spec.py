"""The study spec: candidate pretraining data compared in one job. The study demo validates and
plans each candidate; a candidate's spec is a sweep of its own data in a folder under the
study's, sharing the study's tracking store and tokenizer; a plain sweep is unchanged; every bad
study is one paragraph naming the field and why, exit 2, nothing written."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPEC, error_paragraph

from raysweep.cli import main
from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec, spec_from_dict
from raysweep.storage import SweepFolder

ROOT = Path(__file__).resolve().parents[1]
STUDY_DEMO = ROOT / "jobs/study-demo.yaml"
SERIES = {"hub": "EleutherAI/pythia-70m", "steps": [1000, 2000, 4000],
          "tokens_per_step": 2097152}


def tiny_study() -> dict:
    """TINY_SPEC as a study of two candidates (schedule 2048, 4096, 8192; 4 trials a point)."""
    data = copy.deepcopy(TINY_SPEC)
    data["name"] = "tiny-study"
    data["pretrain"]["mixture"] = []
    data["candidates"] = [
        {"name": "en-de", "mixture": [{"source": "synthetic:en", "weight": 0.5},
                                      {"source": "synthetic:de", "weight": 0.5}]},
        {"name": "fr", "mixture": [{"source": "synthetic:fr", "weight": 1.0}]}]
    data["stop"] = {"after": 3, "confidence": 0.95, "metric": "bleu"}
    return data


def test_the_study_demo_validates_and_plans_each_candidate(capsys):
    assert main(["validate", str(STUDY_DEMO)]) == 0
    out = capsys.readouterr().out
    # The plan's numbers from the YAML files themselves, not from the spec's own arithmetic.
    demo = yaml.safe_load((ROOT / "jobs/demo.yaml").read_text())
    study = yaml.safe_load(STUDY_DEMO.read_text())
    per_point = sum(len(t["finetune_tokens"]) * len(t["lrs"]) * t["seeds"] for t in demo["tasks"])
    checkpoints = demo["pretrain"]["checkpoints"]["count"]  # log-spaced up to the budget
    names = [c["name"] for c in study["candidates"]]
    assert names == ["en-de", "fr-ro", "en-fr"]
    total = per_point + len(names) * checkpoints * per_point  # the baseline once
    assert "study 'study-demo': 3 candidates" in out
    for name, score in zip(names, ("1.00", "0.00", "0.35")):
        assert f"candidate {name} (its folder: candidates/{name}/): alignment score en-de {score}" \
            in out
    assert out.count(f"    trials: {checkpoints * per_point} ({checkpoints} checkpoints") == 3
    assert f"trials: {total} in all = {per_point} of the no-pretraining baseline, once" in out
    assert "synthetic:fr x 0.5, synthetic:ro x 0.5" in out
    assert ("stopping: once every candidate has 3 checkpoints, a candidate that the leader beats "
            "on bleu with probability >= 0.95") in out
    assert out.count("pretraining: 1 workers") == 1  # shared: printed once
    assert out.rstrip().endswith("spec is valid")


def test_a_candidates_spec_is_a_sweep_of_its_data_under_the_studys_folder():
    study = load_spec(STUDY_DEMO)
    assert study.is_study and study.num_trials() == 4 * (1 + 3 * 6)
    specs = study.candidate_specs()
    assert [s.candidate for s in specs] == ["en-de", "fr-ro", "en-fr"]
    fr_ro = study.candidate_spec("fr-ro")
    assert fr_ro == specs[1] and not fr_ro.is_study and fr_ro.stop is None
    assert [(c.source, c.weight) for c in fr_ro.pretrain.mixture] == [("synthetic:fr", 0.5),
                                                                       ("synthetic:ro", 0.5)]
    assert fr_ro.folder.root == study.root / "candidates" / "fr-ro"
    assert fr_ro.root == fr_ro.folder.root and fr_ro.study_folder == study.folder
    assert study.folder == study.study_folder == SweepFolder(study.storage, "study-demo")
    assert fr_ro.resolved_tracking_uri() == study.resolved_tracking_uri()
    assert study.resolved_tracking_uri().endswith("/runs/study-demo/mlflow.db")
    assert fr_ro.published_tokens() == study.published_tokens() == study.pretrain.published_tokens()
    assert fr_ro.num_trials() == 4 * 7  # a sweep of its own: its baseline and 6 checkpoints
    fr_ro.check()  # a candidate's spec is a valid sweep
    assert fr_ro.as_dict()["candidate"] == "fr-ro"
    with pytest.raises(ValueError, match="'de-en' is not a candidate of study 'study-demo'"):
        study.candidate_spec("de-en")


def test_a_candidate_in_a_bucket_is_under_the_studys_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYSWEEP_CACHE", str(tmp_path))
    study = dataclasses.replace(load_spec(STUDY_DEMO), storage="s3://bucket/sweeps",
                                tracking_uri="http://10.0.0.2:5000")
    folder = study.candidate_spec("en-fr").folder
    assert folder.remote and folder.uri == "s3://bucket/sweeps/study-demo/candidates/en-fr"
    assert folder.ray_path == "s3://bucket/sweeps/study-demo/candidates/en-fr/ray"
    assert folder.root == study.root / "candidates" / "en-fr"
    assert study.candidate_spec("en-fr").resolved_tracking_uri() == "http://10.0.0.2:5000"


def test_the_study_tokenizer_trains_on_every_candidates_sources_once():
    en_fr = {"name": "en-fr", "mixture": [{"source": "synthetic:en", "weight": 0.5},
                                          {"source": "synthetic:fr", "weight": 0.5}]}
    study = spec_from_dict({**tiny_study(), "candidates": tiny_study()["candidates"] + [en_fr]})
    sources = [(field, c.source) for field, c in study.tokenizer_sources()]
    assert sources == [("candidates[0].mixture[0].source", "synthetic:en"),
                       ("candidates[0].mixture[1].source", "synthetic:de"),
                       ("candidates[1].mixture[0].source", "synthetic:fr")]
    # A candidate's spec trains the study's one tokenizer, not one of its own mixture.
    assert study.candidate_spec("en-fr").tokenizer_sources() == study.tokenizer_sources()


def test_a_candidate_budget_cuts_the_studys_schedule():
    data = tiny_study()
    data["candidates"][1]["tokens"] = 5000  # 8 x 32 = 256 tokens a step: 5,120 is whole steps
    study = spec_from_dict(data)
    fr = study.candidate_spec("fr")
    assert fr.pretrain.checkpoints == (2048, 4096) and fr.pretrain.tokens == 5000
    assert fr.published_tokens() == [2048, 4096, 5120]
    assert study.candidate_spec("en-de").published_tokens() == [2048, 4096, 8192]
    assert study.published_tokens() == [2048, 4096, 5120, 8192]
    assert study.num_trials() == 4 * (1 + 3 + 3)
    fr.check()


def test_a_plain_sweep_is_unchanged():
    sweep = spec_from_dict(copy.deepcopy(TINY_SPEC))
    assert not sweep.is_study and sweep.candidate == "" and sweep.candidate_specs() == []
    assert sweep.folder == sweep.study_folder == SweepFolder(sweep.storage, "tiny")
    assert sweep.resolved_tracking_uri() == f"sqlite:///{(sweep.root / 'mlflow.db').resolve()}"
    assert sweep.num_trials() == 4 * 4 and sweep.checkpoint_source == "pretraining"
    assert [(f, c.source) for f, c in sweep.tokenizer_sources()] == [
        ("pretrain.mixture[0].source", "synthetic:en"),
        ("pretrain.mixture[1].source", "synthetic:de")]


def test_a_study_of_series_takes_each_candidates_checkpoints():
    data = tiny_study()
    for key in ("model", "tokenizer"):
        data.pop(key)
    data["pretrain"] = {"mixture": []}
    for candidate in data["candidates"]:
        candidate["series"] = SERIES
    study = spec_from_dict(data)
    assert study.checkpoint_source == "series"
    assert study.candidate_spec("fr").published_tokens() == [2097152 * s for s in SERIES["steps"]]


def _with(path: tuple, value):
    """A mutation of tiny_study(): the field at `path` (keys and indexes) set to `value`."""
    def mutate(data: dict) -> None:
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    return mutate


def _without(path: tuple):
    def mutate(data: dict) -> None:
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    return mutate


def _both_series(data: dict) -> None:
    for key in ("model", "tokenizer"):
        data.pop(key)
    data["pretrain"] = {"mixture": []}
    for candidate in data["candidates"]:
        candidate["series"] = SERIES


STUDY_ERRORS = [
    (lambda d: d["candidates"].pop(), "`candidates` must list two or more candidates"),
    (_with(("candidates",), []), "`stop` is a study's stopping policy: it needs two or more"),
    (_with(("candidates", 1, "name"), "EN-de"),
     "`candidates[1].name` must differ from every other candidate's name (candidates[0].name is "
     "'en-de'; compared ignoring case"),
    (_with(("candidates", 1, "name"), "fr/ro"), "`candidates[1].name` must be one or more of"),
    (_with(("candidates", 1, "name"), "fr.ro"),
     "`candidates[1].name` must be one or more of the letters a-z and A-Z, digits, '-' and '_' "
     "(no dots, slashes or spaces): it names the candidate's folder"),
    (_with(("candidates", 1, "name"), "fr ro"), "`candidates[1].name` must be one or more of"),
    (_with(("candidates", 1, "name"), ""), "`candidates[1].name` must be a non-empty string"),
    (_with(("candidates", 1, "model"), {"preset": "t5-small"}),
     "field `candidates[1].model` cannot be set for one candidate: a study compares candidates on "
     "one model and one tokenizer: set model/tokenizer at the top level"),
    (_with(("candidates", 0, "tokenizer"), {"vocab_size": 800}),
     "field `candidates[0].tokenizer` cannot be set for one candidate: a study compares "
     "candidates on one model and one tokenizer: set model/tokenizer at the top level"),
    (_with(("candidates", 0, "pretrain"), {"lr": 0.01}),
     "`candidates[0].pretrain` cannot be set for one candidate: a candidate's pretraining data is "
     "its own `mixture`"),
    (_with(("candidates", 0, "tasks"), []),
     "`candidates[0].tasks` cannot be set for one candidate: a study's candidates share "
     "everything but their pretraining data"),
    (_with(("candidates", 0, "mixtures"), []), "unknown field `candidates[0].mixtures`"),
    (_without(("candidates", 1, "mixture")), "`candidates[1].mixture` must list at least one "
                                             "source with a weight"),
    (_with(("candidates", 1, "mixture", 0, "weight"), 0.7),
     "`candidates[1].mixture` must have weights that sum to 1"),
    (_with(("candidates", 1, "tokens"), 10000),
     "`candidates[1].tokens` must be at most the study's budget, 8,192 tokens (the last of "
     "pretrain.checkpoints)"),
    (_with(("candidates", 1, "tokens"), 3000),
     "`candidates[1].tokens` must give candidate 'fr' at least 3 checkpoints (fit.min_points (3) "
     "for its law, stop.after (3) before any candidate is stopped), not 2 (2,048, 3,072)"),
    (_with(("candidates", 1, "series"), SERIES),
     "`candidates[1].series` must be given for every candidate or for none"),
    (lambda d: (_both_series(d), _with(("candidates", 1, "tokens"), 5000)(d)),
     "`candidates[1].tokens` must be left out with a series"),
    (_with(("pretrain", "mixture"), [{"source": "synthetic:en", "weight": 1.0}]),
     "`pretrain.mixture` must be empty in a study: each candidate gives its own"),
    (_with(("series",), SERIES), "`series` must be left out in a study"),
    (_with(("fit", "metrics"), ["chrf", "cross_entropy"]),
     "`stop.metric` must be one of the metrics the study fits (fit.metrics: chrf, cross_entropy)"),
    (_with(("stop", "metric"), "blue"), "`stop.metric` must be one of bleu"),
    (_with(("stop", "confidence"), 0.5), "`stop.confidence` must be between 0.5 and 1"),
    (_with(("stop", "confidence"), 1.0), "`stop.confidence` must be between 0.5 and 1"),
    (_with(("stop", "after"), 1), "`stop.after` must be at least 2"),
    (_with(("fit", "target_tokens"), None),
     "`fit.target_tokens` must be set with `stop`: a candidate is stopped when it is beaten"),
    (_with(("candidate",), "fr"), "unknown field `candidate`"),
]


@pytest.mark.parametrize("mutate, expected", STUDY_ERRORS,
                         ids=[expected.split("`")[1] for _, expected in STUDY_ERRORS])
def test_a_bad_study_is_one_paragraph_naming_the_field_and_why(mutate, expected, write_spec):
    data = tiny_study()
    mutate(data)
    path = write_spec(data)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert expected in message
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "nothing was written" in message


def test_stop_without_candidates_is_refused(write_spec):
    data = {**copy.deepcopy(TINY_SPEC), "stop": {"after": 3}}
    with pytest.raises(SpecError, match=r"field `stop` is a study's stopping policy: it needs two "
                                        r"or more `candidates` \(a plain sweep runs"):
        load_spec(write_spec(data))


def test_a_study_extending_a_sweep_clears_the_mixture_it_inherits(tmp_path, write_spec):
    write_spec(copy.deepcopy(TINY_SPEC), "_sweep.yaml")
    candidates = tiny_study()["candidates"]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"extends": "_sweep.yaml", "name": "s",
                                     "candidates": candidates}))
    with pytest.raises(SpecError, match=r"`pretrain.mixture` must be empty in a study: .* clears "
                                        r"the mixture it inherits with `pretrain: \{mixture: "
                                        r"\[\]\}`"):
        load_spec(study)
    study.write_text(yaml.safe_dump({"extends": "_sweep.yaml", "name": "s",
                                     "pretrain": {"mixture": []}, "candidates": candidates}))
    spec = load_spec(study)
    assert spec.pretrain.batch_size == TINY_SPEC["pretrain"]["batch_size"]  # the rest inherited
    assert [c.name for c in spec.candidates] == ["en-de", "fr"]


def _refused(capsys, path: Path) -> str:
    assert main(["validate", str(path)]) == 2
    return error_paragraph(capsys.readouterr().err)


def test_validate_refuses_a_candidate_with_its_own_model(write_spec, tmp_path, capsys):
    data = tiny_study()
    data["candidates"][1]["model"] = {"preset": "t5-small"}
    path = write_spec(data)
    before = sorted(tmp_path.rglob("*"))
    err = _refused(capsys, path)
    assert str(path) in err and "field `candidates[1].model` cannot be set for one candidate" in err
    assert "set model/tokenizer at the top level" in err
    assert sorted(tmp_path.rglob("*")) == before


def test_validate_names_the_candidate_whose_source_is_missing(write_spec, tmp_path, capsys):
    data = tiny_study()
    data["candidates"][1]["mixture"] = [{"source": "file:data/missing.jsonl", "weight": 1.0,
                                         "language": "fr"}]
    path = write_spec(data)
    before = sorted(tmp_path.rglob("*"))
    err = _refused(capsys, path)
    assert "candidates[1].mixture[0].source" in err and "missing.jsonl" in err
    assert "does not exist" in err
    assert sorted(tmp_path.rglob("*")) == before


def test_validate_refuses_a_study_of_one_candidate(write_spec, capsys):
    data = tiny_study()
    data["candidates"].pop()
    err = _refused(capsys, write_spec(data))
    assert "field `candidates` must list two or more candidates: a study compares" in err


def test_validate_names_the_candidate_whose_file_holds_too_little_text(write_spec, tmp_path,
                                                                      capsys):
    """A candidate's data checks run on its own spec; the error names the field of the study's
    spec (candidates[1]), not the candidate's pretrain.mixture[0]."""
    data = tiny_study()
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "small.jsonl").write_text(
        "".join('{"text": "un petit texte"}\n' for _ in range(3)))
    data["candidates"][1]["mixture"] = [{"source": "file:data/small.jsonl", "weight": 1.0,
                                         "language": "fr"}]
    path = write_spec(data)
    err = _refused(capsys, path)
    assert "candidates[1] ('fr').mixture[0].source" in err, err
    assert "pretrain.mixture" not in err
