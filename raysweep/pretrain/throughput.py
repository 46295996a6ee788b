"""How fast pretraining trains: tokens per second over the window since the last log (checkpoint
saves left out), the model's FLOPs per token and the device's peak, hence MFU."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from raysweep.spec import SweepSpec


class Throughput:
    """Tokens/s, model TFLOP/s and MFU of the steps since the last `read`. The time spent inside
    `paused` (publishing and saving checkpoints) is not training: it is logged on its own."""

    def __init__(self, flops_per_token: float, peak_flops: float, world: int):
        self.flops_per_token, self.peak_flops, self.world = flops_per_token, peak_flops, world
        self._restart()

    def _restart(self) -> None:
        self.tokens, self.start, self.paused_seconds = 0, time.time(), 0.0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    @contextlib.contextmanager
    def paused(self):
        started = time.time()
        try:
            yield
        finally:
            self.paused_seconds += time.time() - started

    def read(self) -> dict[str, float]:
        """The window's figures; the next window starts now."""
        seconds = max(time.time() - self.start - self.paused_seconds, 1e-9)
        tokens_per_second = self.tokens / seconds
        figures = {"tokens_per_second": tokens_per_second,
                   "model_tflops_per_second": self.flops_per_token * tokens_per_second / 1e12}
        if self.peak_flops:
            figures["mfu"] = (self.flops_per_token * tokens_per_second
                              / (self.peak_flops * self.world))
        self._restart()
        return figures


# Dense bf16 tensor-core peaks (TFLOP/s) by GPU name, for the logged MFU; checked in this order.
GPU_PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121}


def model_flops_per_token(spec: SweepSpec, vocab_size: int) -> float:
    """Training FLOPs per pretraining token: 3 passes (forward + backward) x 2 FLOPs per
    multiply-add, the 6N rule made explicit, with attention scores (PaLM's MFU convention)."""
    if spec.model.family == "causal":
        return _decoder_only_flops_per_token(spec, vocab_size)
    return _encoder_decoder_flops_per_token(spec, vocab_size)


def _decoder_only_flops_per_token(spec: SweepSpec, vocab_size: int) -> float:
    """Every token goes through every layer: q, k, v, o; SwiGLU's three matrices; attention
    scores and their use over the whole sequence (not halved for the causal mask, as PaLM
    counts); the output projection."""
    m, seq_len = spec.model, spec.pretrain.seq_len
    inner = m.num_heads * m.d_kv
    layer = (2 * m.d_model * inner + 2 * m.d_model * inner + 3 * m.d_model * m.d_ff
             + 2 * seq_len * inner)
    return 6 * (m.num_layers * layer + m.d_model * vocab_size)


def _encoder_decoder_flops_per_token(spec: SweepSpec, vocab_size: int) -> float:
    """Per raw token the encoder reads the unmasked share plus a sentinel per span, the decoder
    writes the masked share plus the sentinels; attention scores are counted at the mean
    sequence lengths."""
    m, pre = spec.model, spec.pretrain
    inner = m.num_heads * m.d_kv
    spans = pre.noise_density / pre.mean_span_length
    enc_share, dec_share = 1 - pre.noise_density + spans, pre.noise_density + spans
    enc_len, dec_len = pre.seq_len * enc_share, pre.seq_len * dec_share
    ffn = (3 if m.feed_forward == "gated-gelu" else 2) * m.d_model * m.d_ff
    projections = 4 * m.d_model * inner  # q, k, v, o
    encoder = m.num_layers * (projections + ffn + 2 * enc_len * inner)
    decoder = m.num_decoder_layers * (projections + ffn + 2 * dec_len * inner  # self-attention
                                      + 2 * m.d_model * inner + 2 * enc_len * inner)  # cross: q, o
    cross_keys_values = m.num_decoder_layers * 2 * m.d_model * inner  # computed per encoder token
    macs = (enc_share * (encoder + cross_keys_values)
            + dec_share * (decoder + m.d_model * vocab_size))  # + the output projection
    return 6 * macs


def device_peak_flops(spec: SweepSpec) -> tuple[float, str]:
    """Peak FLOP/s of this worker's device, and where the figure comes from."""
    import torch

    if spec.resources.peak_tflops:
        return spec.resources.peak_tflops * 1e12, "resources.peak_tflops"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} bf16 dense peak"
        return 0.0, f"{name}: unknown peak (set resources.peak_tflops)"
    import psutil

    # Per core and cycle: two 8-wide fp32 FMAs (AVX2, and AMD's AVX-512, which is double-pumped)
    # = 32 FLOPs; Intel cores with two 512-bit FMA units do 64.
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    per_cycle = 64 if "avx512f" in info and "GenuineIntel" in info else 32
    freq = psutil.cpu_freq()
    ghz = (freq.max or freq.current) / 1000 if freq and (freq.max or freq.current) else 2.5
    threads = torch.get_num_threads()
    return (threads * ghz * 1e9 * per_cycle,
            f"{threads} CPU thread(s) at {ghz:.1f} GHz x {per_cycle} FLOP/cycle (estimate)")
