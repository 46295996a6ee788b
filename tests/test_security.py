"""Nothing raysweep reads can run code, local services listen on 127.0.0.1, and specs hold no
secrets. Each loading test plants a real malicious pickle (it would create a marker file when
unpickled) where a user's storage could hold one, and checks that the marker never appears."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec, spec_from_dict

pytestmark = pytest.mark.fault  # run by bench/reliability.py too (docs/reliability.md lists them)

REPO = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickling this calls os.system: what an attacker's checkpoint file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant_pickle(path: Path, marker: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": _RunsCode(marker)}, path)


@pytest.fixture
def published_model(tmp_path, tiny_spec_dict):
    """A sweep spec and a real tiny model published as its checkpoint D_p = 256."""
    from raysweep import checkpoints
    from raysweep.model import build_model

    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    model = build_model(spec, 64, 0, 1)
    assert checkpoints.publish(spec, model, 256, 1, {})
    return spec, checkpoints.checkpoint_dir(spec, 256)


def test_a_pickle_next_to_the_published_weights_is_never_read(published_model, tmp_path):
    from raysweep import checkpoints

    spec, folder = published_model
    marker = tmp_path / "pwned"
    plant_pickle(folder / "pytorch_model.bin", marker)
    model = checkpoints.load_model(spec, 256)
    assert model.num_parameters() > 0 and not marker.exists()
    (folder / "model.safetensors").unlink()  # only the pickle is left: an error, not a load
    with pytest.raises(OSError, match="safetensors"):
        checkpoints.load_model(spec, 256)
    assert not marker.exists()


def test_a_planted_recovery_checkpoint_is_refused_without_running_code(tmp_path):
    from raysweep.pretrain.recovery import weights_only_load

    marker, planted = tmp_path / "pwned", tmp_path / "deepspeed" / "mp_rank_00_model_states.pt"
    plant_pickle(planted, marker)
    with pytest.raises(RuntimeError, match="does not unpickle.*could run code"):
        weights_only_load(str(planted))
    assert not marker.exists()


def test_a_recovery_checkpoint_of_deepspeed_data_loads(tmp_path):
    """What DeepSpeed's ZeRO optimizer state really holds loads through weights_only_load."""
    import torch
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from raysweep.pretrain.recovery import weights_only_load

    state = {"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum.optimizer_states,
             "param_slice_mappings": [{"w": fragment_address(numel=4, start=0)}],
             "base_optimizer_state": {"state": {0: {"exp_avg": torch.ones(4)}}}}
    torch.save(state, tmp_path / "optim_states.pt")
    loaded = weights_only_load(str(tmp_path / "optim_states.pt"))
    assert loaded["zero_stage"] == ZeroStageEnum.optimizer_states
    assert torch.equal(loaded["base_optimizer_state"]["state"][0]["exp_avg"], torch.ones(4))


def test_a_tokenizer_config_naming_code_does_not_run_it(tmp_path, tiny_spec_dict):
    import json

    from raysweep.data.tokenizer import (
        load_tokenizer,
        save_tokenizer,
        tokenizer_dir,
        train_tokenizer,
    )

    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    save_tokenizer(spec, train_tokenizer(spec))
    folder, marker = tokenizer_dir(spec), tmp_path / "pwned"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                    "from transformers import PreTrainedTokenizerFast as Evil\n")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "evil.Evil"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        load_tokenizer(folder)
    except ValueError as err:  # transformers refuses remote code it was not allowed to trust
        assert "trust_remote_code" in str(err)
    assert not marker.exists()


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecError, match=str(path)):
        load_spec(path)
    assert not marker.exists()


def test_the_local_ray_dashboard_listens_on_127_0_0_1(tiny_spec_dict, tmp_path, monkeypatch):
    import psutil
    import ray

    from raysweep.sweep import _connect_ray

    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray, not a cluster
    try:
        host, port = _connect_ray(spec).rsplit(":", 1)
        assert host == "127.0.0.1"
        listening = {c.laddr.ip for c in psutil.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)}
        assert listening == {"127.0.0.1"}, listening  # the port itself, not only the URL
    finally:
        ray.shutdown()


def test_documented_mlflow_commands_bind_to_127_0_0_1():
    commands = [line for line in (REPO / "README.md").read_text().splitlines()
                if re.search(r"\bmlflow (ui|server)\b", line) and "--backend-store-uri" in line]
    assert commands
    for line in commands:
        assert "--host 127.0.0.1" in line, line


SECRET = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|-----BEGIN [A-Z ]*PRIVATE KEY|"
                    r"://[^/\s:@]+:[^/\s@]+@|(password|secret|token)\s*:\s*\S", re.IGNORECASE)


def test_job_specs_and_the_cluster_config_hold_no_secrets():
    files = [*sorted((REPO / "jobs").rglob("*.yaml")), REPO / "cluster.yaml"]
    assert len(files) > 10
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for path in files
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if SECRET.search(line) and not line.lstrip().startswith("#")]
    assert not found, found
