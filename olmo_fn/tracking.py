"""Where metrics go (rank 0): {save_folder}/metrics.jsonl, one Aim run per training run, and the console (a
progress bar on a terminal, plain log lines otherwise). Metric names are the original OLMo's W&B keys
(`train/CrossEntropyLoss`, `optim/total_grad_norm`, `eval/{label}/Perplexity`, ...)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from olmo_fn.checkpoint import storage
from olmo_fn.config import TrackingConfig
from olmo_fn.errors import OlmoFnError

log = logging.getLogger("olmo_fn")


def aim_repo_path(cfg: TrackingConfig, save_folder: str) -> str:
    """The Aim repository folder: the configured one, else {save_folder}/aim (local save folders)."""
    if cfg.aim_repo:
        return cfg.aim_repo
    return f"{save_folder.rstrip('/')}/aim" if "://" not in save_folder else "aim"


def format_metrics(metrics: dict[str, float | None]) -> str:
    """'name=value' pairs, compact, skipping missing values."""
    parts = []
    for name, value in metrics.items():
        if value is None:
            continue
        parts.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


class MetricsFile:
    """{save_folder}/metrics.jsonl: one JSON object per logged step ({"step": N, key: value, ...}), floats at
    full precision. A run resumed at step S first drops the lines of steps after S (written after the
    checkpoint it resumes from); a fresh run starts the file afresh. Local files get each line as it is
    complete; on object stores the whole file is rewritten at each checkpoint and at the end."""

    def __init__(self, save_folder: str, start_step: int):
        self.url = storage.join(save_folder, "metrics.jsonl")
        self.local = storage.is_local(self.url)
        self.lines: list[str] = []
        if start_step > 0 and storage.exists(self.url):
            for line in storage.read_bytes(self.url).decode().splitlines():
                try:
                    if json.loads(line)["step"] <= start_step:
                        self.lines.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
        self.step: int | None = None
        self.row: dict[str, Any] = {}
        if self.local:
            path = storage.local_path(self.url)
            with open(path, "w") as f:
                f.writelines(line + "\n" for line in self.lines)
            self.file = open(path, "a")  # noqa: SIM115 - closed in close()

    def log(self, step: int, metrics: dict[str, float | None]) -> None:
        if step != self.step:
            self.end_row()
            self.step = step
        self.row.update({k: v for k, v in metrics.items() if v is not None})

    def end_row(self) -> None:
        if not self.row:
            return
        line = json.dumps({"step": self.step, **self.row})
        self.row = {}
        if self.local:
            self.file.write(line + "\n")
            self.file.flush()
        else:
            self.lines.append(line)

    def flush(self) -> None:
        """Write what is logged; on an object store that keeps failing, say so and keep the lines for the
        next flush (metrics never stop a run: the checkpoint that follows reports a store that is down)."""
        self.end_row()
        if not self.local:
            try:
                storage.write_bytes(self.url, "".join(line + "\n" for line in self.lines).encode())
            except OlmoFnError as e:
                print(f"warning: metrics not written now, kept for the next checkpoint: {e}", file=sys.stderr)

    def close(self) -> None:
        self.flush()
        if self.local:
            self.file.close()


class Tracker:
    """Console and Aim output of a run; every method is a no-op on ranks other than 0."""

    def __init__(
        self,
        cfg: TrackingConfig,
        *,
        run_name: str,
        save_folder: str,
        hparams: dict[str, Any],
        rank: int,
        total_steps: int,
        start_step: int,
        run_hash: str | None = None,
    ):
        self.rank, self.aim_run, self.bar, self.metrics_file = rank, None, None, None
        self.total_steps = total_steps
        if rank != 0:
            return
        self.metrics_file = MetricsFile(save_folder, start_step)
        if cfg.aim:
            from aim import Run

            self.aim_run = Run(
                run_hash=run_hash,
                repo=aim_repo_path(cfg, save_folder),
                experiment=cfg.experiment or run_name,
                system_tracking_interval=cfg.system_tracking_interval,
                capture_terminal_logs=False,
            )
            self.aim_run.name = run_name
            self.aim_run["hparams"] = hparams
        show_bar = cfg.progress_bar if cfg.progress_bar is not None else sys.stderr.isatty()
        if show_bar:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps, initial=start_step, desc=run_name, unit="step", dynamic_ncols=True
            )

    @property
    def run_hash(self) -> str | None:
        return self.aim_run.hash if self.aim_run is not None else None

    def log(
        self, step: int, metrics: dict[str, float | None], context: dict[str, str], console: bool = True
    ) -> None:
        """Record metrics at a step: into metrics.jsonl, and into Aim under a context ({'subset': 'train'} or
        {'subset': 'eval', 'dataset': label})."""
        if self.rank != 0:
            return
        self.metrics_file.log(step, metrics)
        if self.aim_run is not None:
            for name, value in metrics.items():
                if value is not None:
                    self.aim_run.track(float(value), name=name, step=step, context=context)
        if not console:
            return
        if self.bar is not None and context.get("subset") == "train":
            keys = ("train/CrossEntropyLoss", "throughput/device/tokens_per_second")
            self.bar.set_postfix_str(format_metrics({k.rsplit("/", 1)[1]: metrics.get(k) for k in keys}))
        else:
            self.write(f"[step {step}/{self.total_steps}] {format_metrics(metrics)}")

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def write(self, line: str) -> None:
        """A log line that does not break the progress bar."""
        if self.rank != 0:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def end_step(self) -> None:
        """Everything of this step is logged: its metrics.jsonl line can be written."""
        if self.metrics_file is not None:
            self.metrics_file.end_row()

    def flush(self) -> None:
        """Make metrics.jsonl complete up to the last finished step (also on object stores)."""
        if self.metrics_file is not None:
            self.metrics_file.flush()

    def close(self) -> None:
        if self.metrics_file is not None:
            self.metrics_file.close()
        if self.bar is not None:
            self.bar.close()
        if self.aim_run is not None:
            self.aim_run.close()
