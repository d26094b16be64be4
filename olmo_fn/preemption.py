"""Stopping early on a signal: a scheduler's preemption or eviction notice becomes a checkpoint, not lost work.

Slurm (`scontrol requeue`, preemption, `--signal`) and Kubernetes (eviction, preemption, `kubectl delete`)
send SIGTERM, or a signal the job asked for, some seconds before they kill. While a run is inside
`StopSignals`, such a signal is only counted. After each step the ranks agree whether any of them got one
(`agreed_stop`, one all-reduce), so they stop after the same step, write one checkpoint together and exit
with PREEMPTED_EXIT_STATUS. A second signal during that save is counted too and changes nothing.
"""

from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as dist

from olmo_fn.errors import ConfigError

PREEMPTED_EXIT_STATUS = 75
"""Exit status of a run that stopped on a signal after writing its checkpoint (EX_TEMPFAIL of sysexits.h:
try again); rerun the same command with --try_load_latest_save to continue."""

_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}


def signal_numbers(names: list[str]) -> list[int]:
    """The numbers of signal names like SIGTERM or USR1; ConfigError naming a bad one."""
    out = []
    for name in names:
        full = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
        number = getattr(signal, full, None)
        if not isinstance(number, signal.Signals) or full in _UNCATCHABLE:
            raise ConfigError(
                f"stop_signals: {name!r} is not a signal a process can catch; use names like SIGTERM, SIGUSR1"
            )
        out.append(int(number))
    return out


class StopSignals:
    """While entered, the listed signals are recorded instead of acting (previous handlers come back on exit).

    `received` holds the signal numbers in arrival order. Outside the main thread, where Python cannot
    install handlers, nothing is installed and nothing is ever received.
    """

    def __init__(self, names: list[str]):
        self.numbers = signal_numbers(names)
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.numbers:
                self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _record(self, number: int, frame) -> None:
        self.received.append(number)

    @property
    def active(self) -> bool:
        """Whether a signal can be received at all (so the ranks have something to agree on)."""
        return bool(self._previous)


def agreed_stop(signals: StopSignals, device: torch.device) -> int:
    """The signal that stops the run after this step, the same on every rank (0 = go on).

    Collective when several processes run (every rank calls it after every step): the largest signal
    number any rank received, so a signal that reached one rank stops them all at the same step.
    """
    if not signals.active:
        return 0
    mine = signals.received[0] if signals.received else 0
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mine
    flag = torch.tensor([mine], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def ignore_signals(names: list[str], worker_id: int | None = None) -> None:
    """A data-loader worker's init: ignore the stop signals, which a scheduler sends to every process of
    the job; a killed worker would break the loader while the main process is saving its checkpoint."""
    for number in signal_numbers(names):
        signal.signal(number, signal.SIG_IGN)


def signal_name(number: int) -> str:
    return signal.Signals(number).name
