"""Where metrics go: one Aim run per training run (rank 0), and the console (a progress bar on a terminal,
plain log lines otherwise)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from olmo_fn.config import TrackingConfig

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
        self.rank, self.aim_run, self.bar = rank, None, None
        if rank != 0:
            return
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
        """Record metrics at a step under an Aim context ({'subset': 'train'} or {'subset': 'eval', ...})."""
        if self.rank != 0:
            return
        if self.aim_run is not None:
            for name, value in metrics.items():
                if value is not None:
                    self.aim_run.track(float(value), name=name, step=step, context=context)
        if not console:
            return
        where = "/".join(context.values())
        if self.bar is not None and context.get("subset") == "train":
            self.bar.set_postfix_str(
                format_metrics({k: metrics.get(k) for k in ("loss", "tokens_per_second")})
            )
        else:
            self.write(f"[step {step}] {where} {format_metrics(metrics)}")

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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.aim_run is not None:
            self.aim_run.close()
