"""Logging is configured once, by the command line (`--log-level` / RAYSWEEP_LOG_LEVEL): what
raysweep's modules log shows on the driver's stderr, and a sweep's Ray workers log at the same
level."""

from __future__ import annotations

import logging

import pytest

from raysweep import logs
from raysweep.cli import main


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch):
    monkeypatch.delenv(logs.LEVEL_VARIABLE, raising=False)
    yield
    logging.getLogger("raysweep").setLevel(logging.NOTSET)


def test_the_command_line_shows_what_raysweep_logs_at_info(tiny_spec_dict, write_spec, capsys):
    path = write_spec(tiny_spec_dict)
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "INFO raysweep.data.tokenizer: training the unigram tokenizer" in err


def test_a_higher_level_hides_raysweeps_info_and_the_variable_sets_it_too(
        tiny_spec_dict, write_spec, capsys, monkeypatch):
    path = write_spec(tiny_spec_dict)
    assert main(["validate", str(path), "--log-level", "warning"]) == 0
    assert "training the unigram tokenizer" not in capsys.readouterr().err
    monkeypatch.setenv(logs.LEVEL_VARIABLE, "WARNING")
    assert main(["validate", str(path)]) == 0
    assert "training the unigram tokenizer" not in capsys.readouterr().err
    assert logging.getLogger("raysweep").level == logging.WARNING


def test_configuring_twice_keeps_one_handler_and_libraries_stay_at_warning():
    logs.configure("DEBUG")
    logs.configure("INFO")
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "raysweep", False)]
    assert len(handlers) == 1
    assert logging.getLogger("raysweep.sweep").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING


@pytest.mark.slow
def test_a_sweeps_ray_workers_log_at_the_drivers_level(tiny_spec_dict, tmp_path):
    import ray

    from raysweep.spec_loader import spec_from_dict
    from raysweep.sweep import _connect_ray

    logs.configure("DEBUG")
    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))

    @ray.remote(num_cpus=0)
    def worker_logging() -> tuple[int, bool]:
        handlers = [h for h in logging.getLogger().handlers if getattr(h, "raysweep", False)]
        return logging.getLogger("raysweep.finetune").getEffectiveLevel(), len(handlers) == 1

    try:
        _connect_ray(spec)
        assert ray.get(worker_logging.remote()) == (logging.DEBUG, True)
    finally:
        ray.shutdown()
