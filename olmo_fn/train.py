"""The training loop: build from a TrainConfig, resume, run steps, evaluate, checkpoint, track.

experiment file -> TrainConfig -> build: model (meta), init/load, optimizer, loader
                -> loop: batch -> train_step -> metrics -> tracker / eval / checkpoint
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from olmo_fn import checkpoint as ckpt
from olmo_fn.checkpoint.run_folder import remove_checkpoints, write_config
from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_to_dict
from olmo_fn.data.loader import (
    build_train_loader,
    load_loader_state_dict,
    loader_state_dict,
    order_sampler,
)
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.order import write_global_indices
from olmo_fn.dist import DistEnv, init_distributed
from olmo_fn.errors import ConfigError
from olmo_fn.eval import build_eval_datasets, evaluate_lm
from olmo_fn.metrics import SpeedMeter, device_peak_flops, peak_memory_bytes
from olmo_fn.model import Transformer, flops_per_token, init_weights
from olmo_fn.optim import build_optimizer, lr_at, max_grad_norm_at
from olmo_fn.parallel import parallelize
from olmo_fn.tracking import Tracker
from olmo_fn.train_step import train_step

log = logging.getLogger("olmo_fn")


@dataclass
class TrainState:
    """Where a run stands; checkpointed as the trainer state."""

    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0
    examples_seen_this_epoch: int = 0


@dataclass
class TrainResult:
    model: nn.Module
    state: TrainState
    checkpoint: str | None
    eval_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)


def parse_duration(text: str, batches_per_epoch: int, tokens_per_batch: int, start_tokens: int = 0) -> int:
    """max_duration -> the step to stop at: '1000' steps, '2e12T' tokens, '1ep' epochs."""
    text = str(text).strip()
    try:
        if text.endswith("ep"):
            return int(float(text[:-2]) * batches_per_epoch)
        if text.endswith("T"):
            return math.ceil(float(text[:-1]) / tokens_per_batch)
        return int(float(text))
    except ValueError as e:
        raise ConfigError(
            f"max_duration: cannot read {text!r}; use steps ('1000'), tokens ('2e12T') or '1ep'"
        ) from e


def rng_state() -> dict:
    """Every random generator's state, JSON-able except the torch tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def resolve_load_path(cfg: TrainConfig) -> tuple[str | None, bool]:
    """(checkpoint to load, whether it is this run's own latest save)."""
    if cfg.try_load_latest_save:
        latest = ckpt.find_latest(cfg.save_folder)
        if latest is not None:
            return latest, True
    return cfg.load_path, False


def guard_save_folder(cfg: TrainConfig, resuming_own: bool) -> None:
    """A fresh run may not write into a folder holding checkpoints unless told to (--save_overwrite)."""
    if resuming_own:
        return
    existing = ckpt.find_latest(cfg.save_folder)
    if existing is None:
        return
    if not cfg.save_overwrite:
        raise ConfigError(
            f"save_folder {cfg.save_folder} already holds checkpoints ({existing}); pass --save_overwrite to "
            "replace them, or --try_load_latest_save to resume that run"
        )
    remove_checkpoints(cfg.save_folder)


def build_model(cfg: TrainConfig, device: torch.device, mesh: DeviceMesh | None = None) -> nn.Module:
    """The model on the meta device, parallelized over `mesh` (TP, AC, compile, FSDP), materialised on
    `device` and initialised from the run seed (the same full parameters for every layout)."""
    with torch.device("meta"):
        model = Transformer(cfg.model)
    parallelize(
        model, cfg.parallel, mesh, compile=cfg.compile, device_type=device.type, precision=cfg.precision
    )
    model.to_empty(device=device)
    init_weights(model, cfg.model, cfg.seed)
    return model


def trainer_state_dict(state: TrainState, loader, env: DistEnv, run_hash: str | None) -> dict:
    return {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "epoch": state.epoch,
        "examples_seen_this_epoch": state.examples_seen_this_epoch,
        "world_size": env.world_size,
        "data_loader": loader_state_dict(loader),
        "rng": rng_state(),
        "aim_run_hash": run_hash,
    }


def restore(
    cfg: TrainConfig, path: str, model: nn.Module, optimizer
) -> tuple[TrainState, dict | None, str | None]:
    """Load a checkpoint into model (and optimizer); the trainer state unless reset_trainer_state."""
    keep_optimizer = not cfg.reset_optimizer_state
    loaded = ckpt.load_checkpoint(path, model, optimizer if keep_optimizer else None)
    ts = loaded.trainer_state
    if ts is None or cfg.reset_trainer_state:
        return TrainState(), None, None
    state = TrainState(
        ts["step"], ts.get("tokens_seen", 0), ts.get("epoch", 0), ts.get("examples_seen_this_epoch", 0)
    )
    if ts.get("rng") is not None and ts.get("world_size", 1) == 1:
        set_rng_state(ts["rng"])
    return state, ts, ts.get("aim_run_hash")


def train(cfg: TrainConfig) -> TrainResult | None:
    """Run (or resume) the training a TrainConfig describes; returns the trained model and where it stands."""
    if cfg.dry_run:  # no process group: a plan for the mesh the parallel degrees describe
        from olmo_fn.dryrun import dry_run_report

        print(dry_run_report(cfg))
        return None
    env = init_distributed(cfg.parallel)
    load_path, resuming_own = resolve_load_path(cfg)
    guard_save_folder(cfg, resuming_own)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, env.device, env.mesh)
    optimizer = build_optimizer(model, cfg.optimizer)
    state, trainer_state, run_hash = TrainState(), None, None
    if load_path:
        state, trainer_state, run_hash = restore(cfg, load_path, model, optimizer)
    bolt_on = state.step if (load_path and cfg.reset_optimizer_state and trainer_state) else None
    if not cfg.data.paths and not cfg.data.datasets:
        raise ConfigError(
            "data.paths is empty: pass the token files, e.g. --data.paths=[part-0.npy,part-1.npy]"
        )
    dataset = build_token_dataset(
        cfg.data,
        seq_len=cfg.model.max_sequence_length,
        vocab_size=cfg.model.vocab_size,
        pad_token_id=cfg.model.pad_token_id,
        eos_token_id=cfg.model.eos_token_id,
    )
    loader = build_train_loader(
        dataset,
        cfg.data,
        global_batch_size=cfg.global_train_batch_size,
        seed=cfg.data.seed if cfg.data.seed is not None else cfg.seed,
        rank=env.dp_rank,  # TP ranks of one data-parallel rank read the same batches
        world_size=env.dp_size,
        epoch=state.epoch,
        start_position=state.examples_seen_this_epoch,
    )
    if trainer_state is not None and trainer_state.get("data_loader"):
        load_loader_state_dict(loader, trainer_state["data_loader"])
    if env.rank == 0:
        write_config(cfg.save_folder, config_to_dict(cfg))
    return _loop(cfg, env, model, optimizer, loader, state, run_hash, bolt_on)


def _loop(cfg, env, model, optimizer, loader, state: TrainState, run_hash, bolt_on) -> TrainResult:
    sampler = order_sampler(loader)
    seq = cfg.model.max_sequence_length
    tokens_per_batch = cfg.global_train_batch_size * seq
    max_steps = parse_duration(cfg.max_duration, sampler.batches_per_epoch, tokens_per_batch)
    stop = min(max_steps, cfg.stop_at) if cfg.stop_at is not None else max_steps
    units_tokens = cfg.scheduler.units == "tokens"
    t_max = max_steps * tokens_per_batch if units_tokens else max_steps
    bolt = None if bolt_on is None else bolt_on * (tokens_per_batch if units_tokens else 1)
    autocast = torch.bfloat16 if cfg.precision == "amp_bf16" else None
    peak, peak_note = device_peak_flops(env.device, autocast or torch.float32)
    speed = SpeedMeter(flops_per_token(cfg.model, seq), peak)
    eval_sets = build_eval_datasets(cfg.eval, cfg.data, cfg.model)
    tracker = Tracker(
        cfg.tracking, run_name=cfg.run_name, save_folder=cfg.save_folder, hparams=config_to_dict(cfg),
        rank=env.rank, total_steps=stop, start_step=state.step, run_hash=run_hash,
    )  # fmt: skip
    if peak is None:
        tracker.write(f"MFU not reported: {peak_note}")
    result = TrainResult(model, state, None)
    try:
        if cfg.eval_on_load and eval_sets:
            result.eval_history.append(
                (state.step, _evaluate(cfg, env, model, eval_sets, tracker, state.step))
            )
        iterator = _epoch_iterator(cfg, env, loader, sampler, state)
        while state.step < stop:
            batch = next(iterator)
            start = time.perf_counter()
            progress = (state.step + 1) * (tokens_per_batch if units_tokens else 1)
            metrics = train_step(
                model, optimizer, batch,
                lr=lr_at(cfg.scheduler, cfg.optimizer.learning_rate, progress, t_max, bolt),
                microbatch_size=cfg.device_train_microbatch_size,
                max_grad_norm=max_grad_norm_at(cfg.scheduler, cfg.max_grad_norm, progress),
                z_loss_multiplier=cfg.auxiliary_loss_multiplier if cfg.softmax_auxiliary_loss else 0.0,
                normalization=cfg.loss_normalization, autocast_dtype=autocast, dp_group=env.dp_group,
            )  # fmt: skip
            speed.record(time.perf_counter() - start, metrics.batch_tokens)
            state.step += 1
            state.tokens_seen += tokens_per_batch
            state.examples_seen_this_epoch = loader_state_dict(loader)["global_position"]
            tracker.advance(state.step)
            if state.step % cfg.console_log_interval == 0 or state.step == stop:
                tracker.log(state.step, _train_metrics(metrics, speed, env), {"subset": "train"})
            if _due(cfg.eval_interval, state.step, stop) and eval_sets:
                result.eval_history.append(
                    (state.step, _evaluate(cfg, env, model, eval_sets, tracker, state.step))
                )
            result.checkpoint = (
                _maybe_save(cfg, env, model, optimizer, loader, state, tracker, stop) or result.checkpoint
            )
    finally:
        tracker.close()
    return result


def _epoch_iterator(cfg, env, loader, sampler, state: TrainState):
    """Batches across epochs; each epoch's global order is written to train_data/global_indices.npy."""
    while True:
        iterator = iter(loader)
        if env.rank == 0:
            write_global_indices(sampler.global_indices(), cfg.save_folder)
        state.epoch = sampler.epoch
        yielded = False
        for batch in iterator:
            yielded = True
            yield batch
        if not yielded:
            raise ConfigError("the data loader yielded no batch: the global batch is larger than the dataset")
        state.examples_seen_this_epoch = 0


def _due(interval: int | None, step: int, stop: int) -> bool:
    return step == stop or (interval is not None and interval > 0 and step % interval == 0)


def _train_metrics(m, speed: SpeedMeter, env: DistEnv) -> dict[str, float | None]:
    mfu = speed.mfu(env.world_size)
    return {
        "loss": m.ce_loss,
        "perplexity": math.exp(min(m.ce_loss, 50.0)),
        "z_loss": m.z_loss,
        "grad_norm": m.grad_norm,
        "lr": m.lr,
        "tokens_per_second": speed.tokens_per_second(),
        "mfu": mfu,
        "peak_memory_gb": peak_memory_bytes(env.device) / 2**30,
    }


def _evaluate(cfg, env, model, eval_sets, tracker: Tracker, step: int) -> dict[str, float]:
    out = {}
    autocast = torch.bfloat16 if cfg.precision == "amp_bf16" else None
    for label, dataset in eval_sets.items():
        metrics = evaluate_lm(
            model, dataset, batch_size=cfg.eval.device_eval_batch_size, max_batches=cfg.eval.eval_subset_num_batches,
            rank=env.dp_rank, world_size=env.dp_size, autocast_dtype=autocast,
        )  # fmt: skip
        tracker.log(step, metrics, {"subset": "eval", "dataset": label})
        out.update({f"{label}/{k}": v for k, v in metrics.items()})
    return out


def _maybe_save(
    cfg, env, model, optimizer, loader, state: TrainState, tracker: Tracker, stop: int
) -> str | None:
    """Save what is due at this step: sharded and/or unsharded by interval, and always one at the end."""
    final = state.step == stop
    due = {
        True: cfg.save_interval and state.step % cfg.save_interval == 0,
        False: cfg.save_interval_unsharded and state.step % cfg.save_interval_unsharded == 0,
    }
    keep = {True: cfg.save_num_checkpoints_to_keep, False: cfg.save_num_unsharded_checkpoints_to_keep}
    if final and not any(due[kind] and keep[kind] != 0 for kind in due):
        due[keep[False] == 0] = True  # the end of a run is always saved, unsharded unless that kind is off
    path = None
    for sharded in (True, False):
        if due[sharded] and keep[sharded] != 0:
            trainer = trainer_state_dict(state, loader, env, tracker.run_hash)
            path = ckpt.save_checkpoint(
                cfg.save_folder, state.step, model, optimizer, trainer, config_to_dict(cfg), sharded=sharded,
                keep=keep[sharded],
            )  # fmt: skip
            tracker.write(f"[step {state.step}] checkpoint saved: {path}")
    return path
