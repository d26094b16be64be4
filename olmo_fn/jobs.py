"""What the job launchers (launchers/slurm.py, launchers/k8s.py) share: their command line, split at `--` into the launcher's own
options and the experiment's flags (passed on verbatim), and the checks a job passes before it is submitted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from olmo_fn.config import TrainConfig
from olmo_fn.errors import ConfigError, OlmoFnError

T = TypeVar("T")

# Filesystems that live on one node: a checkpoint written there is invisible to the other nodes.
NODE_LOCAL_FS = {
    "tmpfs",
    "ramfs",
    "devtmpfs",
    "overlay",
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "f2fs",
    "zfs",
}


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the launcher's options, the experiment's flags): everything after the first `--` is the experiment's."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def experiment_config(experiment: str, flags: list[str]) -> TrainConfig:
    """The experiment's config with `flags` applied, parsed as the job will parse it; ConfigError when the
    file is missing or a flag does not parse."""
    from olmo_fn.config_io import parse_cli
    from olmo_fn.launch import quiet_third_party
    from olmo_fn.recipes import load_recipe

    if not Path(experiment).is_file():
        raise ConfigError(f"--experiment {experiment}: no such file; give the path of an experiment file")
    quiet_third_party()
    module = load_recipe(experiment)
    try:
        return parse_cli(TrainConfig, module.config(), argv=flags, program=experiment)
    except ConfigError as e:
        raise ConfigError(f"the flags after -- do not parse for {experiment}: {e}") from None


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding `path` (its nearest existing folder), from /proc/mounts."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    where = Path(os.path.abspath(path))
    while not where.exists() and where != where.parent:
        where = where.parent
    where = where.resolve()
    best = max(
        (m for m in mounts if where == Path(m[0]) or Path(m[0]) in where.parents),
        key=lambda m: len(m[0]),
        default=None,
    )
    return best[1] if best else None


def local_save_folder(save_folder: str) -> str | None:
    """Why `save_folder`, seen from this machine, is not shared between nodes (None when it may be)."""
    fs = None if "://" in save_folder else filesystem_type(save_folder)
    if fs in NODE_LOCAL_FS:
        return (
            f"save_folder {save_folder} is on a node-local filesystem ({fs}): the other nodes cannot see its "
            "checkpoints; use a shared filesystem or a gs:// or s3:// URL"
        )
    return None


def check_job(job, flags: list[str]) -> list[str]:
    """Refuse (ConfigError) what cannot run on job.nodes x job.procs processes, or would not stop cleanly on
    the scheduler's job.stop_signal (e.g. SIGUSR1); return warnings (job.save_folder_warning's)."""
    from olmo_fn.preflight import check_layout

    if job.nodes < 1 or job.procs < 1:
        raise ConfigError(f"nodes ({job.nodes}) and processes per node ({job.procs}) must be >= 1")
    cfg = experiment_config(job.experiment, flags)
    check_layout(cfg, job.nodes * job.procs)
    if job.stop_signal and job.stop_signal not in cfg.stop_signals:
        raise ConfigError(
            f"the job stops the training with {job.stop_signal}, which is not in its stop_signals "
            f"({' '.join(cfg.stop_signals) or 'none'}): add it (--stop_signals ... {job.stop_signal}) or "
            "choose another signal"
        )
    warning = job.save_folder_warning(cfg.save_folder) if job.nodes > 1 else None
    return [warning] if warning else []


def launch(
    argv: list[str] | None, parse: Callable[[list[str]], T], run: Callable[[T, list[str]], None]
) -> None:
    """A launcher's main: parse its own options, check the job, run it; a refused job is one line, status 2."""
    from olmo_fn.launch import tidy_help

    own, flags = split_argv(sys.argv[1:] if argv is None else argv)
    tidy_help()  # --help in whole sentences
    job = parse(own)
    try:
        for warning in check_job(job, flags):
            print(f"warning: {warning}", file=sys.stderr)
        run(job, flags)
    except OlmoFnError as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
