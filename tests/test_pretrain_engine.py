"""The DeepSpeed side of pretraining, without Ray: spec options -> a real engine, and the export
round trip (published weights load into plain transformers and give the engine's logits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from raysweep.pretrain.engine import deepspeed_config, memory_estimate
from raysweep.spec_loader import spec_from_dict


@pytest.mark.parametrize("workers, accumulation", [(1, 1), (2, 2), (4, 1), (4, 2)])
def test_tokens_per_step_do_not_depend_on_the_worker_count(tiny_spec_dict, workers, accumulation):
    tiny_spec_dict["pretrain"].update(batch_size=16, gradient_accumulation=accumulation)
    spec = spec_from_dict(tiny_spec_dict)
    config = deepspeed_config(spec, world_size=workers)
    assert config["train_batch_size"] == 16
    assert (config["train_micro_batch_size_per_gpu"] * workers
            * config["gradient_accumulation_steps"] == 16)
    assert config["bf16"]["enabled"] is False  # CPU: fp32


def test_a_single_worker_runs_without_zero_which_has_nothing_to_partition(tiny_spec_dict):
    tiny_spec_dict["pretrain"].update(zero_stage=2, batch_size=16)
    spec = spec_from_dict(tiny_spec_dict)
    assert deepspeed_config(spec, world_size=1)["zero_optimization"]["stage"] == 0
    assert deepspeed_config(spec, world_size=2)["zero_optimization"]["stage"] == 2


def test_bf16_adafactor_runs_under_autocast_so_its_moments_stay_factored(tiny_spec_dict):
    tiny_spec_dict["resources"]["use_gpu"] = True
    tiny_spec_dict["pretrain"].update(precision="bf16", zero_stage=2)
    assert deepspeed_config(spec_from_dict(tiny_spec_dict), 1, cuda=True)["bf16"]["enabled"]
    tiny_spec_dict["pretrain"].update(optimizer="adafactor", zero_stage=0)
    config = deepspeed_config(spec_from_dict(tiny_spec_dict), 1, cuda=True)
    assert ("bf16" not in config
            and config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"})


def test_memory_estimate_shrinks_with_zero_stage_and_checkpointing(tiny_spec_dict):
    tiny_spec_dict["model"] = {"preset": "t5-base"}
    tiny_spec_dict["pretrain"].update(workers=4, batch_size=16, seq_len=512)
    by_stage = []
    for stage in (0, 1, 2, 3):
        tiny_spec_dict["pretrain"]["zero_stage"] = stage
        by_stage.append(memory_estimate(spec_from_dict(tiny_spec_dict), 32128)["states_bytes"])
    assert by_stage == sorted(by_stage, reverse=True) and by_stage[3] < by_stage[0] / 3
    plain = memory_estimate(spec_from_dict(tiny_spec_dict), 32128)
    tiny_spec_dict["pretrain"]["activation_checkpointing"] = True
    checkpointed = memory_estimate(spec_from_dict(tiny_spec_dict), 32128)
    assert checkpointed["activation_bytes"] < plain["activation_bytes"]
    assert plain["parameters"] == pytest.approx(248e6, rel=0.01)  # T5 v1.1 base


ENGINE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2],
                      RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    import deepspeed, torch
    from transformers import T5ForConditionalGeneration
    from raysweep import checkpoints
    from raysweep.pretrain.batches import rank_batches
    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.model import build_model
    from raysweep.pretrain.engine import build_optimizer, deepspeed_config, inverse_sqrt, train_step
    from raysweep.spec_loader import spec_from_dict

    torch.set_num_threads(1)
    spec = spec_from_dict(json.loads(sys.argv[1]), base_dir=sys.argv[3])
    tokenizer = train_tokenizer(spec)
    torch.manual_seed(0)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    model.gradient_checkpointing_enable()
    deepspeed.init_distributed(dist_backend="gloo")
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), optimizer=build_optimizer(spec, model),
        config=deepspeed_config(spec, 1),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, inverse_sqrt(5)))
    losses, first = [], None
    batches = rank_batches(spec, tokenizer, 0, 1)
    for step, _, batch in batches:
        losses.append(train_step(engine, batch, spec.pretrain.gradient_accumulation).item())
        first = first or batch
    # A recovery checkpoint round trip: the stream position comes back for the same worker count,
    # not for another one, nor from a checkpoint written before positions were saved.
    from raysweep.pretrain.recovery import load_recovery, save_recovery, stream_file
    saved = save_recovery(engine, step, 0, batches.position(), [{"loss": 1.0}]).path
    recovered = load_recovery(engine, saved, 0, 1)
    recovery = {"same": recovered.stream_position == batches.position(),
                "step": recovered.step, "unwritten": recovered.unwritten_metrics,
                "other_world": load_recovery(engine, saved, 0, 2).stream_position}
    os.remove(os.path.join(saved, stream_file(0)))
    recovery["older"] = load_recovery(engine, saved, 0, 1).stream_position
    assert checkpoints.publish(spec, engine.module, 8192, step, {})
    folder = checkpoints.checkpoint_dir(spec, 8192)
    engine.module.eval()
    with torch.no_grad():
        expected = engine.module(**first).logits
        exported = T5ForConditionalGeneration.from_pretrained(str(folder), use_safetensors=True).eval()
        got = exported(**first).logits
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps the client one
    factored = any("exp_avg_sq_row" in state for state in inner.state.values())
    print(json.dumps({"losses": losses, "optimizer": type(inner).__name__, "factored": factored,
                      "recovery": recovery,
                      "global_steps": engine.global_steps, "max_logit_diff": (got - expected).abs().max().item()}))
""")  # noqa: E501


def test_adafactor_accumulation_checkpointing_engine_export_and_recovery_round_trip(
        tiny_spec_dict, tmp_path):
    tiny_spec_dict["pretrain"].update(optimizer="adafactor", gradient_accumulation=2, workers=1,
                                      lr=0.01, zero_stage=0)
    script = tmp_path / "engine.py"
    script.write_text(ENGINE_SCRIPT)
    port = str(29500 + os.getpid() % 1000)
    done = subprocess.run([sys.executable, str(script), json.dumps(tiny_spec_dict), port,
                           str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the paper's optimizer, as designed
    assert "Adafactor" in result["optimizer"] and result["factored"]
    # one per step, not per micro-batch
    assert result["global_steps"] == len(result["losses"]) == 8192 // (8 * 32)
    assert sum(result["losses"][-4:]) < sum(result["losses"][:4])  # it learns
    assert result["max_logit_diff"] < 1e-4  # the exported weights are the engine's
    assert result["recovery"] == {"same": True, "step": 32, "unwritten": [{"loss": 1.0}],
                                  "other_world": None, "older": None}
