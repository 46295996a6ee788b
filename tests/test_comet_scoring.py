"""Real COMET code path on the offline tiny model: build, load, score, and the hub path offline."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from raysweep.evaluation.comet_model import comet_scores, load_comet
from raysweep.evaluation.tiny_comet import build_tiny_comet

SOURCES = ["Der Hund sieht das Haus.", "Die Katze mag einen Baum.", "Le chat voit la maison."]
REFERENCES = ["The dog sees the house.", "The cat likes a tree.", "The cat sees the house."]
HYPOTHESES = ["The dog sees the house.", "A cat likes the tree.", "cat house see"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache") / "comet-tiny"
    build_tiny_comet(root)
    return root


@pytest.fixture(scope="module")
def tiny_model(tiny_root):
    # The cache_dir's `comet-tiny` is the module's build, so this load does not rebuild.
    return load_comet("tiny-local", tiny_root.parent)


def test_build_writes_comet_layout_and_is_idempotent(tiny_root):
    ckpt = tiny_root / "checkpoints" / "model.ckpt"
    assert ckpt.is_file() and (tiny_root / "hparams.yaml").is_file()
    assert (tiny_root / "encoder" / "tokenizer.json").is_file()
    assert not (tiny_root / ".partial").exists()
    mtime = ckpt.stat().st_mtime_ns
    assert build_tiny_comet(tiny_root) == ckpt
    assert ckpt.stat().st_mtime_ns == mtime


def test_scores_are_finite_and_system_is_mean(tiny_model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray worker
    try:
        segs, system = comet_scores(tiny_model, SOURCES, HYPOTHESES, REFERENCES, batch_size=2)
    finally:
        torch.set_num_threads(threads)
    assert len(segs) == 3 and all(isinstance(s, float) and math.isfinite(s) for s in segs)
    assert system == pytest.approx(sum(segs) / len(segs), abs=1e-6)


def test_exact_and_garbage_hypotheses_score_differently(tiny_model):
    exact, _ = comet_scores(tiny_model, SOURCES[:1], REFERENCES[:1], REFERENCES[:1])
    garbage, _ = comet_scores(tiny_model, SOURCES[:1], ["zq xx 123 !!! qqq"], REFERENCES[:1])
    assert exact[0] != garbage[0]


def test_unknown_model_fails_with_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "/nonexistent/dir-or-id-with/slashes/x"
    with pytest.raises(RuntimeError, match="could not be loaded") as info:
        load_comet(name, tmp_path)
    assert name in str(info.value)


def test_unknown_hub_id_offline_fails_with_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RuntimeError, match="Unbabel/no-such-comet") as info:
        load_comet("Unbabel/no-such-comet", tmp_path)
    assert "tiny-local" in str(info.value)


def test_hub_id_loads_from_offline_hub_cache(tiny_root, tiny_model, tmp_path, monkeypatch):
    """The production call (`comet.download_model` -> `load_from_checkpoint`) served from a
    hub-cache layout holding the tiny model."""
    import huggingface_hub.constants as hf_constants

    hub = tmp_path / "hub"
    repo = hub / "models--Unbabel--wmt22-comet-da"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snapshot = repo / "snapshots" / rev
    (snapshot / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_root / "hparams.yaml", snapshot / "hparams.yaml")
    shutil.copy(tiny_root / "checkpoints" / "model.ckpt", snapshot / "checkpoints" / "model.ckpt")

    # huggingface_hub reads these at import time; snapshot_download reads the module constants.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub))

    model = load_comet("Unbabel/wmt22-comet-da", tmp_path)
    segs, _ = comet_scores(model, SOURCES, HYPOTHESES, REFERENCES)
    assert segs == pytest.approx(comet_scores(tiny_model, SOURCES, HYPOTHESES, REFERENCES)[0])
    assert not (tmp_path / "comet-tiny").exists()  # it did not fall back to building one
