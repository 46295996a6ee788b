"""The sweep run's MLflow params: the settings that tell two sweeps apart, one string each (the
runs table's columns). The spec holds them as data; how they read in MLflow is this module's."""

from __future__ import annotations

from raysweep.spec import SweepSpec


def sweep_params(spec: SweepSpec, checkpoint_settings: dict) -> dict[str, str]:
    """The settings that tell two sweeps apart, as MLflow params (the runs table's columns):
    the checkpoint source's (model, tokenizer, how the checkpoints are made: its `settings()`)
    and the rest of the spec's."""
    settings = dict(checkpoint_settings)
    settings.update({"pretrain.tokens": spec.published_tokens()[-1],
                     "evaluation.comet_model": spec.evaluation.comet_model,
                     "fit.target_tokens": spec.fit.target_tokens})
    for task in spec.tasks:
        settings[f"task.{task.name}"] = (
            f"{task.data}; D_f {', '.join(map(str, task.finetune_tokens))}; lrs "
            f"{', '.join(f'{lr:g}' for lr in task.lrs)}; {task.seeds} seeds; {task.steps} "
            f"steps; {task.test_examples} test sentences")
    return {name: str(value) for name, value in settings.items()}
