"""`tools/bench.py load` runs end to end on a tiny model (2 gloo processes; 1 process is the same code path) and prints a row per format
and process count with finite positive figures (the command works; nothing is timed against a target).

It loads two of the four formats (each load is a torchrun of its own, ~10 s here): the original OLMo folder,
which the bench writes with its own code, with the optimizer state, and the Hugging Face folder, without. The
other two (olmo_fn native and sharded, written by save_checkpoint) take the bench's same path as the first;
every kind loads on 1, 2 and 4 ranks in tests/distributed/test_load_everywhere.py."""

import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("olmo", "hf")


def test_bench_load_prints_a_row_per_format_and_rank_count(tmp_path):
    cmd = [sys.executable, "tools/bench.py", "load", "--d-model", "64", "--n-heads", "4", "--n-layers", "2",
           "--vocab-size", "512", "--ranks", "2", "--repeats", "1", "--formats", *FORMATS, "--folder", str(tmp_path)]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("checkpoint size: ") for line in lines)
    assert any(line.startswith("bare process baseline") for line in lines)
    assert any(line.startswith("CPU: ") and "threads" in line for line in lines)
    rows = {}
    for line in lines:
        cells = line.split()
        if cells and cells[0] in FORMATS:
            rows[(cells[0], int(cells[1]))] = cells
    assert sorted(rows) == sorted((f, n) for f in FORMATS for n in (2,)), out.stdout
    for cells in rows.values():
        # format ranks seconds MB/s raw-MB/s before MB peak MB total MB limit MB PASS|FAIL ratio PASS|FAIL
        # fresh-MB/s ratio
        seconds, mbps, raw = (float(c.replace(",", "")) for c in cells[2:5])
        memory = [float(cells[i].replace(",", "")) for i in (5, 7, 9, 11)]
        fresh, fresh_ratio = (float(c.replace(",", "")) for c in cells[-2:])
        assert all(math.isfinite(v) and v > 0 for v in (seconds, mbps, raw, *memory, fresh, fresh_ratio)), (
            cells
        )
        assert cells[13] in ("PASS", "FAIL") and cells[15] in ("PASS", "FAIL"), cells
        assert float(cells[14]) > 0 and len(cells) == 18, cells
    assert list(tmp_path.iterdir()) == []  # the benchmark's temporary folder is gone
