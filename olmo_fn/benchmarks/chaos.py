"""Random kills: a training run SIGKILLed at seeded random moments, each time resumed with
try_load_latest_save, against the same run never killed.

    python tools/bench.py chaos --kills 5    # one kill in each phase; --kills 20: four in each

The run (a tiny model; a checkpoint every 2 steps, an evaluation every 3) trains in a child process. The
parent kills it with SIGKILL in each phase in turn (a step, an evaluation, a save, the update of the `latest`
pointer after a save is published, where the child lingers 5 ms; the first step after a resume), after a
random delay as soon as the child reports entering it, notes where it was, and starts the next child, which
resumes. After the last kill a child trains to the end. Printed:
where the kills landed, whether every loss any child logged equals the uninterrupted run's at that step,
and whether the final parameters are bitwise equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from olmo_fn.benchmarks.load import cpu_model

PHASES = {
    "step": "a step",
    "eval": "an evaluation",
    "save": "a save",
    "pointer": "the pointer update",
    "resume": "the first step after a resume",
}
POINTER_HOLD = 0.005  # seconds the child lingers at a pointer update, so that a kill can land inside it


@dataclass
class ChaosBench:
    kills: int = 20
    """SIGKILLs to deliver."""
    seed: int = 0
    """Seed of the kill delays."""
    max_delay: float = 0.6
    """Seconds after a child starts training within which it is killed (uniformly at random)."""


def _config(folder: Path, steps: int):
    from olmo_fn.config import (
        DataConfig,
        EvalConfig,
        ModelConfig,
        OptimizerConfig,
        TrackingConfig,
        TrainConfig,
    )

    rng = np.random.default_rng(0)
    rng.integers(2, 64, size=200 * 32).astype(np.uint16).tofile(folder / "train.npy")
    rng.integers(2, 64, size=8 * 32).astype(np.uint16).tofile(folder / "valid.npy")
    model = ModelConfig(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=64, embedding_size=64,
                        eos_token_id=0, pad_token_id=1, max_sequence_length=32)  # fmt: skip
    return TrainConfig(
        run_name="chaos", seed=3, max_duration=str(steps), global_train_batch_size=4, device_train_microbatch_size=4,
        model=model, optimizer=OptimizerConfig(learning_rate=1e-3), data=DataConfig(paths=[str(folder / "train.npy")]),
        eval=EvalConfig(datasets={"valid": [str(folder / "valid.npy")]}, device_eval_batch_size=4),
        save_folder=str(folder / "run"), save_interval_unsharded=2, save_num_unsharded_checkpoints_to_keep=3,
        eval_interval=3, try_load_latest_save=True,
        tracking=TrackingConfig(aim=False, system_tracking_interval=None, progress_bar=False),
    )  # fmt: skip


def child(config_path: str, phase_path: str) -> None:
    """Train the config, reporting each phase it enters to phase_path (run in the killed processes)."""
    from olmo_fn.config import TrainConfig
    from olmo_fn.config_io import config_from_dict
    from olmo_fn.run_context import Hooks
    from olmo_fn.train import train

    cfg = config_from_dict(TrainConfig, yaml.safe_load(Path(config_path).read_text()))
    fd = os.open(phase_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def phase(name: str) -> None:
        os.pwrite(fd, name.ljust(8).encode(), 0)

    from olmo_fn.checkpoint import storage

    set_pointer = storage.set_pointer

    def slow_set_pointer(*args) -> None:  # the checkpoint is published; `latest` is about to move
        phase("pointer")
        time.sleep(POINTER_HOLD)
        set_pointer(*args)

    storage.set_pointer = slow_set_pointer
    hooks = Hooks(
        after_build=[lambda run: phase("resume" if run.state.step else "step")],
        after_step=[lambda run, b, m: phase("eval" if run.state.step % cfg.eval_interval == 0 else "step")],
        before_save=[lambda run, sharded: phase("save")],
        after_save=[lambda run, path: phase("step")],
    )
    train(cfg, hooks)


def _start(config: Path, phase: Path, log) -> subprocess.Popen:
    phase.write_text("")
    code = "import sys; from olmo_fn.benchmarks.chaos import child; child(sys.argv[1], sys.argv[2])"
    return subprocess.Popen([sys.executable, "-c", code, str(config), str(phase)], stdout=log, stderr=log)


def _losses(folder: Path) -> tuple[list[tuple[int, float]], int]:
    """(step, loss) of every complete metrics line, and the number of lines a kill cut short."""
    out, cut = [], 0
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            cut += 1
            continue
        if "train/CrossEntropyLoss" in row:
            out.append((row["step"], row["train/CrossEntropyLoss"]))
    return out, cut


def run_chaos_bench(b: ChaosBench) -> dict:
    from safetensors.torch import load_file

    from olmo_fn.checkpoint import find_latest
    from olmo_fn.config_io import config_to_dict

    rng = random.Random(b.seed)
    steps = 60 * max(b.kills, 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = _config(folder, steps)
        configs = {}
        for name, c in (
            ("reference", dataclasses.replace(cfg, save_folder=str(folder / "reference"))),
            ("chaos", cfg),
        ):
            configs[name] = folder / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump(config_to_dict(c)))
        log = open(folder / "children.log", "ab")  # noqa: SIM115 (closed below)
        phase = folder / "phase"
        if _start(configs["reference"], phase, log).wait() != 0:
            raise RuntimeError(
                f"the uninterrupted run failed: {(folder / 'children.log').read_text()[-2000:]}"
            )
        landed: Counter = Counter()
        kills = 0
        while kills < b.kills:
            target = list(PHASES)[kills % len(PHASES)]  # each phase in turn, at a random step of it
            proc = _start(configs["chaos"], phase, log)
            while not phase.read_text().strip() and proc.poll() is None:
                time.sleep(0.001)
            if target != "resume":
                time.sleep(rng.uniform(0, b.max_delay))
            while (where := phase.read_text().strip()) != target and proc.poll() is None:
                pass  # a phase may last a millisecond: watch for it without sleeping
            if proc.poll() is not None:
                break  # it finished (or failed) before the kill
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            landed[where] += 1
            kills += 1
        final = _start(configs["chaos"], phase, log).wait()
        log.close()
        reference, _ = _losses(folder / "reference")
        expected = dict(reference)
        logged, cut = _losses(folder / "run")
        mismatched = [(s, loss) for s, loss in logged if expected.get(s) != loss]
        latest, ref_latest = find_latest(cfg.save_folder), find_latest(str(folder / "reference"))
        equal = False
        if final == 0 and latest and latest.endswith(f"step{steps}-unsharded"):
            a, r = load_file(f"{latest}/model.safetensors"), load_file(f"{ref_latest}/model.safetensors")
            equal = a.keys() == r.keys() and all(a[k].equal(r[k]) for k in a)
    where = ", ".join(f"{n} during {PHASES.get(p, p or 'start-up')}" for p, n in landed.most_common())
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; a {steps}-step tiny run, a checkpoint every 2 steps")
    print(f"chaos: {kills} SIGKILLs ({where}); {len(logged)} logged steps, {len(mismatched)} with a loss unlike the "
          f"uninterrupted run's ({cut} lines cut short by a kill)")  # fmt: skip
    print(f"chaos: {kills}/{b.kills} killed and resumed; final parameters bitwise equal to the uninterrupted run: "
          f"{'yes' if equal else 'NO'}")  # fmt: skip
    return {"kills": kills, "landed": dict(landed), "mismatched": len(mismatched), "equal": equal,
            "final_status": final, "logged": len(logged)}  # fmt: skip
