"""Pretraining as a checkpoint source (raysweep.checkpoint_source): Ray Train + DeepSpeed on the
spec's mixture (raysweep.pretrain.loop), publishing a checkpoint at every scheduled D_p. The
sweep's tokenizer is the spec's own (trained offline, a hub tokenizer, or a saved one)."""

from __future__ import annotations

from raysweep.data.checks import check_mixture_sources
from raysweep.data.mixture import mixture_text
from raysweep.data.tokenizer import fetch_tokenizer, load_tokenizer, tokenizer_dir, train_tokenizer
from raysweep.model import build_model
from raysweep.plan import count_trials
from raysweep.pretrain.engine import memory_estimate, worker_memory_bytes
from raysweep.pretrain.loop import run_pretraining
from raysweep.spec import SpecError, SweepSpec


class PretrainingSource:
    stage = "pretraining"

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def plan_lines(self) -> list[str]:
        spec, pre = self.spec, self.spec.pretrain
        memory = memory_estimate(spec, _vocab_size(spec, None))
        tokens = spec.published_tokens()
        return [
            f"  pretraining mixture: {mixture_text(pre.mixture)}",
            f"  pretraining: {pre.workers} workers, ZeRO-{pre.zero_stage}, {pre.optimizer}, "
            f"{pre.tokens_per_step()} tokens/step; {spec.model.preset or 'custom'} "
            f"{'decoder-only' if spec.model.family == 'causal' else 'encoder-decoder'} model, "
            f"{memory['parameters'] / 1e6:,.1f}M parameters, about "
            f"{memory['total_bytes'] / 2**30:.2f} GiB per worker of "
            f"{worker_memory_bytes(spec) / 2**30:.0f} GiB",
            f"  checkpoints (D_p, tokens): {', '.join(f'{t:,}' for t in tokens)} "
            f"+ the no-pretraining baseline (D_p = 0); budget {tokens[-1]:,} tokens",
            f"  recovery: a checkpoint every {pre.recovery_every} steps (keep "
            f"{pre.recovery_keep}), up to {pre.max_failures} restarts"]

    def settings(self) -> dict[str, str]:
        """The model, tokenizer and pretraining settings, as the sweep run's MLflow params."""
        model, pre, tokenizer = self.spec.model, self.spec.pretrain, self.spec.tokenizer
        return {
            "model": f"{model.preset or 'custom'} ({model.family}): d_model {model.d_model}, d_ff "
                     f"{model.d_ff}, {model.layers()} layers"
                     + (f", {model.feed_forward}" if model.family == "seq2seq" else ""),
            "tokenizer": {"unigram": f"unigram, {tokenizer.vocab_size} pieces",
                          "hub": f"hub {tokenizer.hub_id}",
                          "saved": f"saved {tokenizer.path}"}.get(tokenizer.kind, tokenizer.kind),
            "pretrain.batch": f"{pre.batch_size} x {pre.seq_len} tokens",
            "pretrain.optimizer": f"{pre.optimizer}, lr {pre.lr:g}, ZeRO-{pre.zero_stage}, "
                                  f"{pre.precision}, {pre.workers} workers",
        }

    def check(self, offline: bool):
        """The tokenizer (offline, a hub one or one trained on hf: data is not fetched), the
        mixture's sources, and the memory a worker needs."""
        tokenizer = self.tokenizer(offline)
        self.check_with(tokenizer)
        return tokenizer

    def check_with(self, tokenizer) -> None:
        """The mixture's sources and the memory a worker needs, with the sweep's tokenizer (a
        study's: raysweep.study.source)."""
        check_mixture_sources(self.spec, tokenizer)
        check_memory(self.spec, tokenizer)

    def final_trials(self) -> int:
        """The trials the sweep ends with: the baseline's and every checkpoint's."""
        return count_trials(self.spec, self.final_checkpoints())

    def tokenizer(self, offline: bool):
        spec = self.spec
        # Offline (validate), a bucket is not read either: the tokenizer is trained or fetched at
        # run.
        saved = tokenizer_dir(spec) if offline else fetch_tokenizer(spec)
        if (saved / "tokenizer_config.json").exists():
            return load_tokenizer(saved)
        if offline and self._needs_network():
            return None
        try:
            return train_tokenizer(spec)
        except OSError as err:  # a hub tokenizer that cannot be fetched
            if spec.tokenizer.kind != "hub":
                raise
            raise SpecError(f"{spec.source_file}: field `tokenizer.hub_id`: "
                            f"{spec.tokenizer.hub_id!r} could not be loaded "
                            f"({' '.join(str(err).split())[:300]}). Check the id and the network, "
                            f"or use tokenizer.kind unigram; nothing was written.") from None

    def _needs_network(self) -> bool:
        """Whether the tokenizer comes from the hub or is trained on hf: data."""
        sources = ([c.source for _, c in self.spec.tokenizer_sources()]
                   + [t.data for t in self.spec.tasks])
        return self.spec.tokenizer.kind == "hub" or any(s.startswith("hf:") for s in sources)

    def prepare(self) -> None:
        pass  # pretraining starts from the spec alone

    def produce(self, run_id: str, echo) -> None:
        echo(f"[raysweep] pretraining: {self.spec.pretrain.workers} workers, up to "
             f"{self.spec.published_tokens()[-1]:,} tokens")
        run_pretraining(self.spec, run_id)

    def baseline_ready(self) -> bool:
        return True

    def baseline_model(self, tokenizer):
        return build_model(self.spec, len(tokenizer), tokenizer.pad_token_id,
                           tokenizer.eos_token_id)

    def final_checkpoints(self) -> list[int]:
        return self.spec.published_tokens()

    def request_stop(self) -> bool:
        return False  # pretraining stops with its driver (`ray job stop`, Ctrl-C)


def _vocab_size(spec: SweepSpec, tokenizer) -> int:
    if tokenizer is not None:
        return len(tokenizer)
    # Offline validation of a hub tokenizer: mT5's vocabulary (the paper's) as the estimate.
    return {"unigram": spec.tokenizer.vocab_size + spec.tokenizer.sentinels,
            "byt5": 259 + spec.tokenizer.sentinels}.get(spec.tokenizer.kind, 250_112)


def check_memory(spec: SweepSpec, tokenizer) -> None:
    """Too little memory for the model is said before anything starts, from a size estimate."""
    need = memory_estimate(spec, _vocab_size(spec, tokenizer))
    have = worker_memory_bytes(spec)
    if need["total_bytes"] > have:
        pre, gib = spec.pretrain, 2**30
        raise SpecError(
            f"{spec.source_file or '<spec>'}: pretraining this model needs about "
            f"{need['total_bytes'] / gib:.1f} GiB per worker ({need['parameters'] / 1e6:,.0f}M "
            f"parameters: weights, gradients and {pre.optimizer} states "
            f"{need['states_bytes'] / gib:.1f} GiB with ZeRO-{pre.zero_stage} over {pre.workers} "
            f"workers, activations {need['activation_bytes'] / gib:.1f} GiB), but each worker has "
            f"{have / gib:.1f} GiB (resources.worker_memory_gb). Raise pretrain.workers or "
            f"pretrain.zero_stage, set pretrain.gradient_accumulation or "
            f"pretrain.activation_checkpointing, or choose a smaller model.preset; nothing was "
            f"written.")
