"""The spec: valid specs give the plan; bad ones give one clear paragraph, exit 2, nothing
written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import error_paragraph

from raysweep.cli import main
from raysweep.data.mixture import alignment_score
from raysweep.spec import MixtureComponent, SpecError, TaskSpec
from raysweep.spec_loader import load_spec, spec_from_dict


def test_valid_spec_plans_exact_checkpoints_and_trial_count(tiny_spec_dict, write_spec):
    spec = load_spec(write_spec(tiny_spec_dict))
    # 8 x 32 = 256 tokens per step: scheduled D_p are whole steps already
    assert spec.pretrain.published_tokens() == [2048, 4096, 8192]
    assert spec.checkpoint_tokens() == [0, 2048, 4096, 8192]
    assert spec.num_trials() == 4 * 2 * 2
    assert spec.root.is_absolute() and spec.root.name == "tiny"


def test_checkpoint_schedule_rounds_up_to_whole_steps(tiny_spec_dict):
    tiny_spec_dict["pretrain"]["checkpoints"] = [1000, 300]
    spec = spec_from_dict(tiny_spec_dict)
    assert spec.pretrain.published_tokens() == [512, 1024]


def test_token_counts_accept_scientific_notation(tiny_spec_dict, write_spec):
    path = write_spec(tiny_spec_dict)
    path.write_text(path.read_text().replace("- 8192", "- 1e4"))
    assert max(load_spec(path).pretrain.checkpoints) == 10000


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return error_paragraph(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["pretrain"].update(batchsize=4), "unknown field `pretrain.batchsize`"),
    (lambda d: d["pretrain"].update(checkpoints=[2048, 0]),
     "`pretrain.checkpoints[1]` must be greater than zero"),
    (lambda d: d["tasks"][0].update(finetune_tokens=[-5]),
     "`tasks[0].finetune_tokens[0]` must be greater than zero"),
    (lambda d: d["pretrain"]["mixture"][1].update(weight=0.6),
     "weights that sum to 1 (they sum to 1.1)"),
    (lambda d: d["tasks"][0].update(lrs="0.1"), "`tasks[0].lrs` must be a list"),
    (lambda d: d.pop("name"), "required field `name` is missing"),
    (lambda d: d["tasks"][0].update(seeds=0),
     "`tasks[0].seeds` must be a whole number of finetune"),
    (lambda d: d["tasks"][0].update(test_examples=1),
     "`tasks[0].test_examples` must be at least 2"),
    (lambda d: d["fit"].update(min_effect={"blue": 0.5}), "`fit.min_effect.blue` must be one of"),
    (lambda d: d["fit"].update(target_score={"bleu": -3}),
     "`fit.target_score.bleu` must be a positive"),
    (lambda d: d["tasks"][0].update(name="en'de"), "`tasks[0].name` must use only letters"),
])
def test_bad_spec_is_one_paragraph_exit_2_and_writes_nothing(
        tiny_spec_dict, write_spec, tmp_path, capsys, command, mutate, expected):
    mutate(tiny_spec_dict)
    path = write_spec(tiny_spec_dict)
    before = sorted(tmp_path.rglob("*"))
    err = _error(capsys, [command, str(path)])
    assert expected in err and str(path) in err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("command", ["validate", "run"])
def test_finetune_size_larger_than_task_data_is_rejected(tiny_spec_dict, write_spec, tmp_path,
                                                         capsys, command):
    tiny_spec_dict["tasks"][0]["finetune_tokens"] = [1000, 10**9]
    path = write_spec(tiny_spec_dict)
    err = _error(capsys, [command, str(path)])
    assert "`tasks[0].finetune_tokens` asks for 1000000000 tokens" in err
    assert "holds only" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_missing_data_file_is_named(tiny_spec_dict, write_spec, tmp_path, capsys, command):
    tiny_spec_dict["tasks"][0]["data"] = "file:data/missing.jsonl"
    path = write_spec(tiny_spec_dict)
    err = _error(capsys, [command, str(path)])
    assert "missing.jsonl" in err and "does not exist" in err and "tasks[0].data" in err
    assert not (tmp_path / "runs").exists()


def test_local_jsonl_task_data_is_read_through_datasets(tiny_spec_dict, write_spec, tmp_path,
                                                        capsys):
    import json

    from raysweep.data.synthetic import parallel_pair

    rows = [{"translation": dict(zip(("en", "de"), parallel_pair("en", "de", i)))}
            for i in range(300)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tiny_spec_dict["tasks"][0].update(data="file:pairs.jsonl", finetune_tokens=[500])
    assert main(["validate", str(write_spec(tiny_spec_dict))]) == 0
    out = capsys.readouterr().out
    assert "finetune sizes (D_f, tokens): 500 of" in out and "trials: 8" in out


def test_spec_file_that_is_not_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    assert "not valid YAML" in _error(capsys, ["validate", str(path)])


def test_console_script_exit_status(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nbogus: 1\n")
    done = subprocess.run([sys.executable, "-m", "raysweep", "validate", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown field `bogus`" in done.stderr and "Traceback" not in done.stderr


def test_validate_prints_the_plan(tiny_spec_dict, write_spec, capsys):
    assert main(["validate", str(write_spec(tiny_spec_dict))]) == 0
    out = capsys.readouterr().out
    assert "checkpoints (D_p, tokens): 2,048, 4,096, 8,192" in out
    assert "learning rates: 0.001, 0.003" in out and "trials: 16" in out
    assert "alignment score 1.00" in out


@pytest.mark.parametrize("shares, expected", [
    ({"en": 0.5, "fr": 0.5}, 1.0),   # the paper's examples
    ({"en": 1.0}, 0.7),
    ({"fr": 1.0}, 0.8),
    ({"de": 1.0}, 0.0),
    ({"en": 0.3, "fr": 0.7}, 0.3 * 0.7 + 0.7 * 0.3 + 0.8 * 0.7),
])
def test_alignment_score_matches_the_paper(shares, expected):
    mixture = tuple(MixtureComponent(f"synthetic:{lang}", w) for lang, w in shares.items())
    task = TaskSpec("en-fr", "en", "fr", "synthetic:en-fr", (1000,))
    assert alignment_score(mixture, task) == pytest.approx(expected)


def test_spec_error_is_a_value_error():
    with pytest.raises(SpecError):
        spec_from_dict({"name": "x"})


def test_finetune_size_smaller_than_one_pair_is_rejected(tiny_spec_dict, write_spec, capsys):
    tiny_spec_dict["tasks"][0]["finetune_tokens"] = [3, 1000]
    err = _error(capsys, ["validate", str(write_spec(tiny_spec_dict))])
    assert "`tasks[0].finetune_tokens` has 3 tokens, too few for even one sentence pair" in err


def test_hub_spec_validates_offline_and_run_says_what_it_cannot_fetch(
        tiny_spec_dict, write_spec, tmp_path, capsys):
    # Paper-scale specs name hub tokenizers and datasets: `validate` checks them without network;
    # `run` fails at once, naming the field, before writing anything.
    tiny_spec_dict["tokenizer"] = {"kind": "hub", "hub_id": "google/mt5-base"}
    tiny_spec_dict["pretrain"]["mixture"] = [{"source": "hf:allenai/c4:en", "weight": 0.5},
                                            {"source": "hf:allenai/c4:de", "weight": 0.5}]
    tiny_spec_dict["tasks"][0]["data"] = "hf:wmt17:de-en"
    path = write_spec(tiny_spec_dict)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(data size checked when the run starts)" in out and "trials: 16" in out
    err = _error(capsys, ["run", str(path)])  # HF_HUB_OFFLINE=1 (conftest): no download
    assert "`tokenizer.hub_id`: 'google/mt5-base' could not be loaded" in err
    assert not (tmp_path / "runs").exists()


def test_model_presets_give_the_papers_dims_and_explicit_fields_override(tiny_spec_dict):
    tiny_spec_dict["model"] = {"preset": "t5-3b"}
    model = spec_from_dict(tiny_spec_dict).model
    # The paper's T5-3B: 24+24 layers, d_model 1024, 32 heads x 128, d_ff 16384.
    assert (model.num_layers, model.num_decoder_layers, model.d_model, model.num_heads, model.d_kv,
            model.d_ff) == (24, 24, 1024, 32, 128, 16384)
    tiny_spec_dict["model"] = {"preset": "t5-770m", "num_layers": 2, "dropout": 0.1}
    model = spec_from_dict(tiny_spec_dict).model
    assert ((model.num_layers, model.num_decoder_layers, model.d_ff, model.dropout)
            == (2, 24, 2816, 0.1))


def test_budget_and_log_spaced_checkpoints(tiny_spec_dict):
    tiny_spec_dict["pretrain"].update(checkpoints={"first": 1000, "count": 4}, tokens=64000)
    pre = spec_from_dict(tiny_spec_dict).pretrain
    assert pre.checkpoints == (1000, 4000, 16000, 64000)  # evenly spaced in log
    assert pre.published_tokens() == [1024, 4096, 16128, 64000]  # whole steps of 256 tokens
    tiny_spec_dict["pretrain"].update(checkpoints=[2048], tokens=5000)
    assert (spec_from_dict(tiny_spec_dict).pretrain.published_tokens()
            == [2048, 5120])  # + the budget


def test_unknown_model_preset_is_a_clear_error(tiny_spec_dict, write_spec, capsys):
    tiny_spec_dict["model"] = {"preset": "t5-xxl"}
    err = _error(capsys, ["validate", str(write_spec(tiny_spec_dict))])
    assert "`model.preset`" in err and "t5-xxl" in err and "t5-770m" in err


@pytest.mark.parametrize("pretrain, field, words", [
    ({"optimizer": "sgd"}, "pretrain.optimizer", "must be one of adamw, adafactor"),
    ({"zero_stage": True}, "pretrain.zero_stage", "must be one of 0, 1, 2, 3"),
    ({"precision": "bf16"}, "pretrain.precision", "resources.use_gpu"),
    ({"gradient_accumulation": 3}, "pretrain.batch_size",
     "workers x pretrain.gradient_accumulation"),
    ({"optimizer": "adafactor", "zero_stage": 2}, "pretrain.zero_stage", "factored second moments"),
    ({"tokens": 5000}, "pretrain.checkpoints[2]", "beyond the token budget"),
    ({"checkpoints": {"first": 1000, "count": 4}}, "pretrain.tokens", "log-spaced"),
    ({"checkpoints": {"first": 1000}, "tokens": 8192}, "pretrain.checkpoints",
     "{first: N, count: K}"),
    ({"recovery_every": 0}, "pretrain.recovery_every", "greater than zero"),
])
def test_bad_pretraining_options_name_the_field(tiny_spec_dict, write_spec, capsys, pretrain,
                                                field, words):
    tiny_spec_dict["pretrain"].update(pretrain)
    err = _error(capsys, ["validate", str(write_spec(tiny_spec_dict))])
    assert f"`{field}`" in err and words in err


def test_too_little_memory_for_the_model_is_said_before_starting(tiny_spec_dict, write_spec,
                                                                 capsys):
    tiny_spec_dict["model"] = {"preset": "t5-770m"}
    tiny_spec_dict["resources"]["worker_memory_gb"] = 4
    path = write_spec(tiny_spec_dict)
    err = _error(capsys, ["run", str(path)])
    assert "needs about" in err and "M parameters" in err and "has 4.0 GiB" in err
    assert "resources.worker_memory_gb" in err and "pretrain.zero_stage" in err
    assert not (path.parent / "runs").exists()  # nothing was written
    tiny_spec_dict["resources"]["worker_memory_gb"] = 64
    assert main(["validate", str(write_spec(tiny_spec_dict))]) == 0


def test_status_report_and_fit_of_a_sweep_never_run_say_so_and_write_nothing(tiny_spec_dict,
                                                                              write_spec, capsys):
    path = write_spec(tiny_spec_dict)
    assert main(["status", str(path)]) == 0
    assert "nothing in MLflow yet" in capsys.readouterr().out
    assert "raysweep run" in _error(capsys, ["report", str(path), "--out", str(path.parent / "r")])
    assert "run it first" in _error(capsys, ["fit", str(path)])
    assert not (path.parent / "runs").exists() and not (path.parent / "r").exists()


def test_a_file_uri_storage_is_that_local_folder(tiny_spec_dict, tmp_path):
    """`storage: file:///data/x` is the folder /data/x (not <spec dir>/file:/data/x); a file://
    URI that names no local folder is a clear error naming the field."""
    tiny_spec_dict["storage"] = f"file://{tmp_path}/my%20runs"
    spec = spec_from_dict(tiny_spec_dict, base_dir="/elsewhere")
    assert spec.storage == f"{tmp_path}/my runs"
    assert spec.root == tmp_path / "my runs" / spec.name
    tiny_spec_dict["storage"] = "file://somehost/runs"
    with pytest.raises(SpecError, match=r"field `storage` must name a folder of this machine"):
        spec_from_dict(tiny_spec_dict)
