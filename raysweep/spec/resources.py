"""What the sweep asks of the machines: `ResourceSpec` (CPUs, GPUs, concurrency, retries and the
custom Ray resources that place each kind of work on its node type); it checks its own fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from raysweep.spec.errors import Fields, fail


@dataclass(frozen=True)
class ResourceSpec:
    local_cpus: int = 8
    """Logical CPUs for a local Ray (oversubscribed on purpose, so pretraining and finetuning can
    run together on a laptop; threads are pinned to 1 per process)."""
    pretrain_worker_cpus: float = 1
    """CPUs requested by each pretraining worker."""
    trial_cpus: float = 1
    """CPUs requested by each finetune trial."""
    max_concurrent_trials: int = 2
    """Finetune trials running at once."""
    trial_retries: int = 1
    """Times a failed finetune trial is run again (a lost spot node, a transient error) before it is
    recorded as failed, with its reason, in its MLflow run."""
    use_gpu: bool = False
    """Pretraining workers and trials request a GPU each."""
    peak_tflops: float | None = None
    """Peak dense TFLOP/s of one pretraining worker's device, for the logged MFU. Default: looked up
    from the GPU's name (bf16 tensor-core peak), or estimated for a CPU from its clock."""
    worker_memory_gb: float | None = None
    """Memory of each pretraining worker's device in GiB (GPU memory with use_gpu, else RAM),
    checked against an estimate before anything starts. Default: 80 with a GPU (A100/H100 80GB),
    else this machine's RAM shared by the workers."""
    pretrain_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each pretraining worker requests, e.g. {pretrain_pool: 1}: on a
    cluster, only the node type that advertises them (cluster.yaml) runs pretraining."""
    trial_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each finetune trial requests, e.g. {finetune_pool: 1}."""
    coordinator_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources of the watcher and fitter actors, e.g. {coordinator: 0.01}: keeps them
    on the on-demand head node, where a spot preemption cannot take them."""

    def check(self, fields: Fields) -> None:
        for name in ("local_cpus", "max_concurrent_trials"):
            fields.positive(getattr(self, name), name)
        for group in ("pretrain_resources", "trial_resources", "coordinator_resources"):
            for name, amount in getattr(self, group).items():
                fields.positive(amount, f"{group}.{name}")
        if self.trial_retries < 0:
            fields.fail("trial_retries", "must be 0 or more", self.trial_retries)
        if self.peak_tflops is not None:
            fields.positive(self.peak_tflops, "peak_tflops")
        if self.pretrain_worker_cpus < 0 or self.trial_cpus < 0:
            fail(fields.where, "resources", "must not request negative CPUs",
                 (self.pretrain_worker_cpus, self.trial_cpus))
