"""The typed values a training run threads through its loop, the hooks that observe it, and the save policy.

`Run` holds what the loop works on (config, process environment, model, optimizer, loader, state,
tracker, hooks, the spike window) and `trainer_state_dict` what a checkpoint keeps of it; `Hooks` are the
few places tests and tools look in (after the model is built, after a step, around a save, before a log
line) instead of patching module internals; `saves_due` says which checkpoint kinds a step writes,
`stop_save_kind` which one a run stopped by a signal writes, as pure functions of the config; the notes are
the lines a run writes about its config when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from olmo_fn.config import TrainConfig
from olmo_fn.data.loader import loader_state_dict
from olmo_fn.dist import DistEnv
from olmo_fn.loss import ORIGINAL_Z_LOSS_MULTIPLIER
from olmo_fn.spikes import SpikeWindow


@dataclass
class TrainState:
    """Where a run stands; checkpointed as the trainer state."""

    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0
    examples_seen_this_epoch: int = 0


@dataclass
class Hooks:
    """Observers of a run, called on every rank; each list may hold any number of callables.

    after_build(run)                        the model is initialised or loaded, before the first step
    after_step(run, batch, metrics)         a step was applied (batch: this rank's input)
    before_save(run, sharded)               a checkpoint of that kind is about to be written
    after_save(run, path)                   a checkpoint was written and committed
    before_log(run, step, metrics, context) a metrics record is about to go to the console / Aim
    """

    after_build: list[Callable[[Run], None]] = field(default_factory=list)
    after_step: list[Callable[[Run, dict, Any], None]] = field(default_factory=list)
    before_save: list[Callable[[Run, bool], None]] = field(default_factory=list)
    after_save: list[Callable[[Run, str], None]] = field(default_factory=list)
    before_log: list[Callable[[Run, int, dict, dict], None]] = field(default_factory=list)


@dataclass
class Run:
    """One training run in progress."""

    cfg: TrainConfig
    env: DistEnv
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    state: TrainState
    tracker: Any = None
    hooks: Hooks = field(default_factory=Hooks)
    run_hash: str | None = None
    spikes: SpikeWindow | None = None
    """The recent losses and gradient norms steps are judged by (optimizer.skip_spikes; None when off)."""
    notes: list[str] = field(default_factory=list)
    """Lines the loop writes when it starts (what was loaded)."""


def trainer_state_dict(run: Run) -> dict:
    """What a checkpoint keeps of a run besides model and optimizer: its TrainState, the world size, the
    loader's position, the Aim run and the spike window (train.restore reads it back)."""
    state = run.state
    return {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "epoch": state.epoch,
        "examples_seen_this_epoch": state.examples_seen_this_epoch,
        "world_size": run.env.world_size,
        "data_loader": loader_state_dict(run.loader),
        "aim_run_hash": run.run_hash,
        "spikes": run.spikes.state_dict() if run.spikes else None,
    }


def saves_due(cfg: TrainConfig, step: int, stop: int) -> list[bool]:
    """Which checkpoint kinds step writes: True = sharded, False = unsharded (sharded first).

    A kind is due at its interval unless its keep count is 0 (that kind is off); the last step is always
    saved, unsharded unless unsharded checkpoints are off.
    """
    rules = {
        True: (cfg.save_interval, cfg.save_num_checkpoints_to_keep),
        False: (cfg.save_interval_unsharded, cfg.save_num_unsharded_checkpoints_to_keep),
    }
    due = [kind for kind, (every, keep) in rules.items() if keep != 0 and every and step % every == 0]
    if step == stop and not due:
        kind = rules[False][1] == 0
        due = [kind] if rules[kind][1] != 0 else []
    return due


def stop_save_kind(cfg: TrainConfig) -> bool | None:
    """The checkpoint a run stopped by a signal writes: sharded when the run saves sharded ones (save_interval
    set), else unsharded; None when both kinds are off."""
    sharded_on = cfg.save_num_checkpoints_to_keep != 0
    if sharded_on and cfg.save_interval:
        return True
    if cfg.save_num_unsharded_checkpoints_to_keep != 0:
        return False
    return True if sharded_on else None


def original_trainer_note(cfg: TrainConfig) -> str | None:
    """One line saying which of the original trainer's behaviours this run reproduces, if any."""
    parts = []
    if cfg.original_trainer.builtin_z_loss_multiplier and cfg.softmax_auxiliary_loss:
        said = cfg.auxiliary_loss_multiplier
        parts.append(
            f"z-loss multiplier {ORIGINAL_Z_LOSS_MULTIPLIER:g}"
            + (
                f" (the config says {said:g}; the original never passed it to its loss)"
                if said != 1e-4
                else ""
            )
        )
    warmup = cfg.scheduler.grad_clip_warmup_steps is not None and cfg.scheduler.grad_clip_warmup_factor
    if cfg.original_trainer.lagged_clip_warmup and warmup and cfg.max_grad_norm is not None:
        parts.append("the clip warmup lags one step (step 1 is clipped at the plain max_grad_norm)")
    return "as the original trainer did: " + "; ".join(parts) if parts else None


def checkpoint_notes(cfg: TrainConfig) -> list[str]:
    """A line for each save interval that a keep count of 0 turns off (0 = that kind is never written)."""
    out = []
    for interval, keep, kind in (
        ("save_interval", "save_num_checkpoints_to_keep", "sharded"),
        ("save_interval_unsharded", "save_num_unsharded_checkpoints_to_keep", "unsharded"),
    ):
        if getattr(cfg, interval) and getattr(cfg, keep) == 0:
            out.append(
                f"{interval}={getattr(cfg, interval)} has no effect: {keep}=0 turns {kind} checkpoints off"
            )
    return out


def load_note(path: str, kind: str, step: int | None, reset: list[str]) -> str:
    """One line saying what a run loaded: the checkpoint, its kind, its step (None: the trainer state was not
    restored) and what was reset."""
    at = f"at step {step}" if step is not None else "weights only, training starts at step 0"
    return f"loaded {path} ({kind} checkpoint, {at})" + (f"; reset: {', '.join(reset)}" if reset else "")


def setting_notes(cfg: TrainConfig, max_steps: int, stop: int, unit: int, has_evals: bool) -> list[str]:
    """Warnings for settings that cannot do what they say in a run of max_steps steps (stop: its last step;
    unit: scheduler units per step)."""
    out = []
    sched = cfg.scheduler
    length = (sched.t_max if sched.t_max is not None else max_steps * unit) / unit
    if sched.name != "constant" and sched.t_warmup / unit > length:
        out.append(
            f"warning: scheduler.t_warmup={sched.t_warmup:g} {sched.units} is longer than the schedule "
            f"({length:g} steps): the learning rate never reaches its peak; lower --scheduler.t_warmup"
        )
    if has_evals and cfg.eval_interval and cfg.eval_interval > stop:
        out.append(
            f"warning: eval_interval={cfg.eval_interval} is past the end of the run (step {stop}): "
            "in-loop evaluation runs only at the last step; lower --eval_interval"
        )
    return out
