"""Throughput, model FLOPs utilisation and memory: what a step costs on the device it runs on."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

import torch

# Dense bf16 peak FLOP/s (no sparsity) of known accelerators, by a substring of the device name.
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "MI300X": 1307e12,
    "MI250X": 383e12,
}


class CpuPeak:
    """The best fp32 FLOP/s this process has seen from square matmul probes. A busy machine can only slow a
    probe, never speed it up, so more probes (a few sizes, a few repeats, spread over a run) only move the
    peak toward the truth; one probe on a loaded machine gave MFUs above 100%."""

    def __init__(self, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 3):
        self.sizes, self.repeats = sizes, repeats
        self.flops, self.probes = 0.0, 0

    def probe(self) -> float:
        """Time `repeats` matmuls of each size with this process's threads; return the best FLOP/s so far."""
        for size in self.sizes:
            a, b = torch.randn(size, size), torch.randn(size, size)
            a @ b  # warm up the BLAS threads
            for _ in range(self.repeats):
                start = time.perf_counter()
                a @ b
                self.flops = max(self.flops, 2 * size**3 / (time.perf_counter() - start))
                self.probes += 1
        return self.flops

    def peak(self) -> float:
        """The best so far, probing first if nothing was probed yet."""
        return self.flops or self.probe()

    def label(self) -> str:
        sizes = "/".join(str(s) for s in self.sizes)
        return f"best of {self.probes} fp32 matmul probes ({sizes} square, {torch.get_num_threads()} threads)"


CPU_PEAK = CpuPeak()
"""This process's CPU peak: one per process, as the threads and the machine it measures are."""


def device_peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """(peak FLOP/s, where it comes from); (None, reason) for a device we know no honest peak of."""
    if device.type == "cpu":
        peak = CPU_PEAK.peak()
        return peak, f"measured: {CPU_PEAK.label()}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_BF16_PEAK.items():
            if key in name:
                if dtype == torch.float32:
                    return None, f"{name}: no fp32 peak in the table (MFU is quoted against bf16)"
                return peak, f"{name} dense bf16 peak"
        return None, f"{name}: unknown peak, no MFU reported"
    return None, f"{device.type}: unknown peak, no MFU reported"


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory so far: the CUDA allocator's peak on GPUs, the process's max RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


class SpeedMeter:
    """Tokens per second and MFU over a sliding window of steps. An MFU above 1 is impossible: the peak was
    measured on a disturbed machine, so the meter measures it once more (`reprobe` returns the new best) and
    reports no MFU rather than a wrong one."""

    def __init__(
        self,
        flops_per_token: int,
        peak_flops: float | None,
        window: int = 20,
        reprobe: Callable[[], float] | None = None,
    ):
        self.flops_per_token, self.peak, self.window = flops_per_token, peak_flops, window
        self.reprobe = reprobe
        self.samples: list[tuple[float, int]] = []

    def record(self, seconds: float, tokens: int) -> None:
        self.samples = (self.samples + [(seconds, tokens)])[-self.window :]

    def tokens_per_second(self) -> float:
        seconds = sum(s for s, _ in self.samples)
        return sum(t for _, t in self.samples) / seconds if seconds > 0 else 0.0

    def seconds_per_step(self) -> float:
        return sum(s for s, _ in self.samples) / len(self.samples) if self.samples else 0.0

    def mfu(self, world_size: int = 1) -> float | None:
        if self.peak is None:
            return None
        flops = self.tokens_per_second() * self.flops_per_token / world_size
        if flops > self.peak and self.reprobe is not None:
            self.peak, self.reprobe = max(self.peak, self.reprobe()), None
        return flops / self.peak if flops <= self.peak else None
