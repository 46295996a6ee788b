"""Recovery checkpoints: the full DeepSpeed state of every rank (weights, optimizer shards, lr
schedule) plus the step and the metrics not yet in MLflow, handed to Ray Train, which keeps the
latest few on the sweep's storage and gives the newest back to restarted workers. Loading never
unpickles code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raysweep.storage import write_json_atomic

RECOVERY_STATE = "raysweep_recovery.json"
DEEPSPEED_TAG = "deepspeed"


def stream_file(rank: int) -> str:
    return f"raysweep_stream_rank{rank}.json"


def save_recovery(engine, step: int, rank: int, stream_position: dict,
                  unwritten_metrics: list[dict] = ()):
    """A recovery checkpoint of this rank: DeepSpeed's full state (weights, optimizer shards, lr
    schedule) and where this rank's data stream stands (RankBatches.position: a restart goes on
    from it without reading the data again), in a fresh local folder, which Ray Train uploads
    and merges with the other ranks'. Rank 0 adds the metrics it has logged but not yet written
    to MLflow (the tracking server may be down)."""
    import tempfile

    from ray.train import Checkpoint


    folder = tempfile.mkdtemp(prefix=f"raysweep-recovery-{step:09d}-")
    engine.save_checkpoint(folder, tag=DEEPSPEED_TAG)  # each rank writes its own shard
    write_json_atomic(Path(folder) / stream_file(rank), stream_position)
    if rank == 0:
        write_json_atomic(Path(folder) / RECOVERY_STATE,
                          {"step": step, "unwritten_metrics": list(unwritten_metrics)})
    return Checkpoint.from_directory(folder)


@dataclass
class Recovered:
    step: int
    """The step the checkpoint was saved after."""
    unwritten_metrics: list[dict]
    """Metrics rank 0 had logged but MLflow did not have yet."""
    stream_position: dict | None
    """Where this rank's data stream stood; None from a checkpoint that has none for it (written
    before streams were saved, or by another worker count): the stream then re-reads its way."""


def load_recovery(engine, folder: str, rank: int, world: int) -> Recovered:
    """Restore the engine from a recovery checkpoint; returns what else it holds."""
    import json

    # DeepSpeed unpickles its state files with weights_only=False; ours unpickles only data.
    engine.checkpoint_engine.load = weights_only_load
    engine.load_checkpoint(folder, tag=DEEPSPEED_TAG)
    state = json.loads((Path(folder) / RECOVERY_STATE).read_text())
    stream = Path(folder) / stream_file(rank)
    position = json.loads(stream.read_text()) if stream.is_file() else None
    if (position is not None
            and (position.get("step"), position.get("world")) != (state["step"], world)):
        position = None
    return Recovered(state["step"], state.get("unwritten_metrics", []), position)


def weights_only_load(path: str, map_location=None):
    """torch.load of a DeepSpeed state file that unpickles tensors, containers and the three
    plain DeepSpeed types a ZeRO optimizer state holds, and nothing else: a file planted in the
    sweep's storage cannot run code when a restarted worker loads it."""
    import pickle

    import torch
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    try:
        with torch.serialization.safe_globals([fragment_address, LossScaler, DynamicLossScaler,
                                               ZeroStageEnum]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        raise RuntimeError(f"recovery checkpoint file {path} holds objects raysweep does not "
                           f"unpickle, since unpickling them could run code: {unsafe or err}. "
                           f"Delete the recovery folder if you did not expect this.") from None


def remove_unregistered_recoveries() -> list[str]:
    """Delete recovery folders that a failed attempt uploaded but Ray Train never registered (the
    worker died before the controller collected its report): nothing would resume from them, and
    rotation would never delete them. Called by rank 0 before an attempt reports anything."""
    import pyarrow.fs
    import ray.train
    from ray.train import CheckpointConsistencyMode

    storage = ray.train.get_context().get_storage()
    registered = {Path(reported.checkpoint.path).name for reported in
                  ray.train.get_all_reported_checkpoints(CheckpointConsistencyMode.COMMITTED)}
    fs = storage.storage_filesystem
    removed = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(storage.experiment_fs_path,
                                                          allow_not_found=True)):
        if (info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
                and info.base_name not in registered):
            fs.delete_dir(info.path)
            removed.append(info.base_name)
    return removed
