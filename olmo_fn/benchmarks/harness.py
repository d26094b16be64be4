"""Each benchmark variant in its own fresh process, alternating A B C, A B C, ...: the figures a user running
one variant alone gets (variants sharing a process slow each other: transformers eager by ~20%), drift landing
on all alike, and the CPU use of every timed part, so that a run disturbed by other processes says so.

A worker is `python -m olmo_fn.benchmarks.<bench> --worker VARIANT CONFIG_JSON`: it builds its variant, warms
up (compiling there), times its steps and prints one result line; the parent probes the CPU peak before,
between and after the rounds (no worker runs then) and summarises.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from olmo_fn.errors import OlmoFnError
from olmo_fn.metrics import CPU_PEAK

RESULT = "bench-worker-result: "
TIMEOUT_S = 3600  # a worker that runs longer is stuck: fail it rather than hang
DISTURBED = 0.10  # other processes' share of the machine above which a timed part counts as disturbed
MIN_TICKS = 20  # /proc/stat counts 10 ms ticks per CPU: fewer than this over a timed part cannot tell 10%


class WorkerError(OlmoFnError, RuntimeError):
    """A variant's worker process failed, hung or printed no result."""


def _machine() -> tuple[int, int, int]:
    """(busy ticks, all ticks, CPUs) of the whole machine from /proc/stat; zeros where there is none."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0, 0, 0
    ticks = [int(x) for x in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3].isdigit())
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), cpus


def timed_steps(step: Callable[[], object], n: int) -> dict:
    """Seconds of each of `n` calls, with this process's CPU time and the machine's ticks over all of them."""
    m0, cpu0, start = _machine(), time.process_time(), time.perf_counter()
    seconds = []
    for _ in range(n):
        s = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - s)
    wall, cpu, m1 = time.perf_counter() - start, time.process_time() - cpu0, _machine()
    usage = dict(
        wall=wall,
        cpu=cpu,
        busy=m1[0] - m0[0],
        ticks=m1[1] - m0[1],
        cpus=m1[2],
        threads=torch.get_num_threads(),
    )
    return {"seconds": seconds, "usage": usage}


def worker_main(work: Callable[[str, dict], dict]) -> None:
    """A worker's entry: `work(variant, config)` returns timed_steps' figures plus "tokens_per_step" and
    whatever else the bench reports; print it as one line."""
    _, _worker_flag, variant, config = sys.argv
    print(RESULT + json.dumps({"pid": os.getpid(), **work(variant, json.loads(config))}), flush=True)


def _worker(module: str, variant: str, config: dict, where: str) -> dict:
    cmd = [sys.executable, "-m", module, "--worker", variant, json.dumps(config)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise WorkerError(f"the {variant} worker ({where}) did not finish in {TIMEOUT_S} s") from None
    results = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
    if out.returncode != 0 or not results:
        last = (out.stderr.strip().splitlines() or ["no error output"])[-1]
        raise WorkerError(f"the {variant} worker ({where}) failed with exit code {out.returncode}: {last}")
    return json.loads(results[-1].removeprefix(RESULT))


def run_rounds(
    module: str, variants: list[str], config: dict, repeats: int
) -> tuple[dict[str, list[dict]], list[str]]:
    """({variant: one result per round}, the order the workers ran in); probes the CPU peak between rounds."""
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    order = []
    CPU_PEAK.probe()
    for r in range(repeats):
        for v in variants:
            runs[v].append(_worker(module, v, config, f"round {r + 1} of {repeats}"))
            order.append(v)
            rate = runs[v][-1]["tokens_per_step"] / statistics.median(runs[v][-1]["seconds"])
            print(
                f"round {r + 1}/{repeats} {v}: {rate:,.1f} tokens/s; {describe(usage([runs[v][-1]]))}",
                flush=True,
            )
        CPU_PEAK.probe()
    return runs, order


def usage(runs: list[dict]) -> dict:
    """CPU use over the timed parts of `runs`: this process's CPU per wall second per thread, the machine's busy
    fraction, and what other processes took of it meanwhile (None: no /proc/stat, or too short to tell)."""
    total = {k: sum(r["usage"][k] for r in runs) for k in ("wall", "cpu", "busy", "ticks")}
    threads, cpus = runs[0]["usage"]["threads"], runs[0]["usage"]["cpus"]
    process = total["cpu"] / total["wall"] / threads if total["wall"] > 0 else 0.0
    machine = total["busy"] / total["ticks"] if total["ticks"] >= MIN_TICKS else None
    others = None if machine is None else max(0.0, machine - process * threads / cpus)
    disturbed = others is not None and others > DISTURBED
    return dict(threads=threads, process=process, machine_busy=machine, others=others, disturbed=disturbed)


def describe(u: dict) -> str:
    line = f"process CPU {u['process']:.0%} of {u['threads']} threads"
    if u["machine_busy"] is None:
        return line + ", machine busy unknown (too short for /proc/stat's ticks, or none)"
    line += f", machine busy {u['machine_busy']:.0%}"
    return line + (f": DISTURBED, other processes took {u['others']:.0%} of it" if u["disturbed"] else "")


def summarise(runs: dict[str, list[dict]], baseline: str) -> dict:
    """Per variant: median tokens/s over every timed step of every round, the spread of the rounds' medians
    (max - min, as a fraction of the median), the ratio to every peer, its workers' process ids, and the CPU
    use of each variant and of all."""
    tps = {
        v: r[0]["tokens_per_step"] / statistics.median([s for x in r for s in x["seconds"]])
        for v, r in runs.items()
    }
    rounds = {v: [x["tokens_per_step"] / statistics.median(x["seconds"]) for x in r] for v, r in runs.items()}
    return {
        "tokens_per_second": tps,
        "spread": {v: (max(p) - min(p)) / tps[v] for v, p in rounds.items()},
        "ratios": {v: {p: tps[v] / tps[p] for p in tps if p != v} for v in tps},
        f"ratio_vs_{baseline.replace('-', '_')}": {v: tps[v] / tps[baseline] for v in tps}
        if baseline in tps
        else {},
        "pids": {v: [x["pid"] for x in r] for v, r in runs.items()},
        "usage": {v: usage(r) for v, r in runs.items()},
        "usage_all": usage([x for r in runs.values() for x in r]),
    }


def print_header(order: list[str], repeats: int, figures: dict) -> None:
    """The CPU, the threads, the alternation and the CPU use over every timed step of every worker."""
    from olmo_fn.benchmarks.load import cpu_model  # here: load.py's imports would slow every worker's start

    workers = figures["usage_all"]["threads"]
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch threads: {workers} per worker, {torch.get_num_threads()} here"
    )
    print(
        f"each variant in its own fresh process, {repeats} round(s) in the order {' '.join(order[: len(order) // repeats])}"
    )
    print(f"CPU use over all timed steps: {describe(figures['usage_all'])}")


def print_variant(v: str, figures: dict, extra: str) -> None:
    tps, spread = figures["tokens_per_second"][v], figures["spread"][v]
    print(
        f"{v:20s} {tps:9.1f} tokens/s (rounds' spread {spread:5.1%})  {extra}  [{describe(figures['usage'][v])}]"
    )


def print_ratios(figures: dict) -> None:
    names = list(figures["tokens_per_second"])
    print("ratios, row / column: " + " ".join(f"{n:>18s}" for n in names))
    for v in names:
        cells = (f"{figures['ratios'][v][p]:17.2f}x" if p != v else f"{'1':>17s}x" for p in names)
        print(f"{v:>21s} " + " ".join(cells))
