"""`python tools/bench.py chaos`: a run SIGKILLed once in each phase (a step, an evaluation, a save, the pointer
update, the first step after a resume), resumed each time, ends bitwise equal to the run never killed, and says so."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_kill_resumes_and_the_run_ends_bitwise_equal():
    out = subprocess.run([sys.executable, "tools/bench.py", "chaos", "--kills", "5"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert ("5 SIGKILLs (1 during a step, 1 during an evaluation, 1 during a save, 1 during the pointer update, "
            "1 during the first step after a resume)") in out.stdout, out.stdout  # fmt: skip
    assert "0 with a loss unlike the uninterrupted run's" in out.stdout
    assert (
        "5/5 killed and resumed; final parameters bitwise equal to the uninterrupted run: yes" in out.stdout
    )
