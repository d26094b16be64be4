"""An MFU is never above 100%: the CPU peak is the best of many probes, and a meter that would report more
measures the peak once more, then reports none."""

import torch

from olmo_fn.metrics import CpuPeak, SpeedMeter, device_peak_flops


def _meter(peak: float, reprobe=None) -> SpeedMeter:
    meter = SpeedMeter(flops_per_token=1000, peak_flops=peak, reprobe=reprobe)
    meter.record(seconds=1.0, tokens=1000)  # 1e6 FLOP/s achieved
    return meter


def test_an_achievable_mfu_is_reported_without_probing_again():
    calls = []
    assert _meter(4e6, reprobe=lambda: calls.append(1) or 8e6).mfu() == 0.25
    assert calls == []


def test_a_peak_below_what_was_achieved_is_measured_again_once():
    calls = []
    meter = _meter(5e5, reprobe=lambda: calls.append(1) or 2e6)
    assert meter.mfu() == 0.5  # the new, higher peak
    assert calls == [1] and meter.peak == 2e6


def test_an_mfu_still_above_one_after_the_second_probe_is_none_and_not_probed_again():
    calls = []
    meter = _meter(5e5, reprobe=lambda: calls.append(1) or 1e5)  # the second probe was worse: keep the best
    assert meter.mfu() is None
    assert meter.mfu() is None
    assert calls == [1] and meter.peak == 5e5


def test_without_a_way_to_probe_again_an_impossible_mfu_is_none():
    assert _meter(5e5).mfu() is None
    assert _meter(5e5).mfu(world_size=4) == 0.5  # per device: 2.5e5 of 5e5


def test_the_cpu_peak_is_the_best_of_every_probe_and_says_so():
    peak = CpuPeak(sizes=(32, 64), repeats=2)
    first = peak.probe()
    assert first > 0 and peak.probes == 4
    peak.flops = 1e18  # as if an earlier probe had been faster: a slower one never lowers the peak
    assert peak.probe() == 1e18 and peak.peak() == 1e18
    threads = torch.get_num_threads()
    assert peak.label() == f"best of 8 fp32 matmul probes (32/64 square, {threads} threads)"


def test_the_cpu_device_peak_names_its_probes():
    peak, source = device_peak_flops(torch.device("cpu"), torch.float32)
    assert peak > 0 and source.startswith("measured: best of ") and "fp32 matmul probes" in source
