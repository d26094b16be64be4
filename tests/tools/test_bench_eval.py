"""`python tools/bench.py eval` runs and prints its figures, with the three scorers agreeing."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_eval_bench_prints_rates_side_by_side():
    """The README's `python tools/bench.py eval`, as written (about 40 s here)."""
    cmd = [sys.executable, "tools/bench.py", "eval"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^CPU: .+, \d+ threads", out.stdout, re.M)
    assert "321 requests" in out.stdout  # the README's figures are of this workload
    for name in (
        "olmo_fn evaluator",
        "transformers, batched",
        "transformers, batched, sorted",
        "transformers, one by one",
    ):
        assert re.search(rf"{name}:\s+[\d.]+ requests/s\s+[\d,]+ tokens/s", out.stdout), name
    assert "olmo_fn vs one by one:" in out.stdout
    diff = float(re.search(r"between them: (\S+)", out.stdout).group(1))
    assert diff < 1e-4
