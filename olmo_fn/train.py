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
import torch.distributed as dist
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
from olmo_fn.data.order import write_global_indices
from olmo_fn.dist import DistEnv, init_distributed
from olmo_fn.errors import ConfigError, OlmoFnError
from olmo_fn.eval import evaluate_lm
from olmo_fn.metrics import SpeedMeter, device_peak_flops, peak_memory_bytes
from olmo_fn.model import Transformer, flops_per_token, init_weights
from olmo_fn.optim import build_optimizer, lr_at, max_grad_norm_at
from olmo_fn.parallel import parallelize
from olmo_fn.preflight import check_save_folder, open_data, preflight
from olmo_fn.run_context import Hooks, Run, TrainState, saves_due
from olmo_fn.tracking import Tracker
from olmo_fn.train_step import train_step

log = logging.getLogger("olmo_fn")


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


def prepare_save_folder(cfg: TrainConfig) -> str | None:
    """Find what to load (this run's latest save with --try_load_latest_save, else load_path), clear the
    folder for --save_overwrite, write config.yaml. Run by rank 0 only (see train)."""
    latest = ckpt.find_latest(cfg.save_folder)
    if latest is not None and not cfg.try_load_latest_save:
        check_save_folder(cfg)  # preflight said so already, unless the folder changed since
        remove_checkpoints(cfg.save_folder)
    write_config(cfg.save_folder, config_to_dict(cfg))
    return latest if latest is not None and cfg.try_load_latest_save else cfg.load_path


def build_model(
    cfg: TrainConfig, device: torch.device, mesh: DeviceMesh | None = None, *, init: bool = True
) -> nn.Module:
    """The model on the meta device, parallelized over `mesh` (TP, AC, compile, FSDP), materialised on
    `device` and initialised from the run seed (the same full parameters for every layout). `init=False`
    leaves the memory uninitialised, for a checkpoint load that overwrites every parameter (a load checks
    that it does)."""
    with torch.device("meta"):
        model = Transformer(cfg.model)
    parallelize(
        model, cfg.parallel, mesh, compile=cfg.compile, device_type=device.type, precision=cfg.precision
    )
    model.to_empty(device=device)
    if init:
        init_weights(model, cfg.model, cfg.seed)
    return model


def trainer_state_dict(run: Run) -> dict:
    state = run.state
    return {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "epoch": state.epoch,
        "examples_seen_this_epoch": state.examples_seen_this_epoch,
        "world_size": run.env.world_size,
        "data_loader": loader_state_dict(run.loader),
        "rng": rng_state(),
        "aim_run_hash": run.run_hash,
    }


def restore(
    cfg: TrainConfig, path: str, model: nn.Module, optimizer
) -> tuple[TrainState, dict | None, str | None]:
    """Load a checkpoint into model (and optimizer); the trainer state unless reset_trainer_state."""
    keep_optimizer = not cfg.reset_optimizer_state
    loaded = ckpt.load_checkpoint(
        path, model, optimizer if keep_optimizer else None, verify=cfg.verify_checkpoint
    )
    ts = loaded.trainer_state
    if ts is None or cfg.reset_trainer_state:
        return TrainState(), None, None
    state = TrainState(
        ts["step"], ts.get("tokens_seen", 0), ts.get("epoch", 0), ts.get("examples_seen_this_epoch", 0)
    )
    if ts.get("rng") is not None and ts.get("world_size", 1) == 1:
        set_rng_state(ts["rng"])
    return state, ts, ts.get("aim_run_hash")


def _on_rank0(env: DistEnv, fn, *args, share: bool = True):
    """fn(*args) on rank 0 while the others wait; its OlmoFnError reaches every rank (so none waits
    forever, and shared files are touched once), and so does its result when `share` (else they get None)."""
    result, box = None, [None, ""]
    if env.rank == 0:
        try:
            result = fn(*args)
        except OlmoFnError as e:
            box[1] = str(e)
        box[0] = result if share else None
    if env.world_size > 1:
        dist.broadcast_object_list(box, src=0)
    if box[1]:
        raise ConfigError(box[1])
    return result if env.rank == 0 else box[0]


def train(cfg: TrainConfig, hooks: Hooks | None = None) -> TrainResult | None:
    """Run (or resume) the training a TrainConfig describes; returns the trained model and where it stands."""
    if cfg.dry_run:  # no process group: the checks and a plan for the mesh the parallel degrees describe
        from olmo_fn.dryrun import dry_run_report, plan_degrees

        has_data = bool(cfg.data.paths or cfg.data.datasets)
        preflight(cfg, math.prod(plan_degrees(cfg)), with_data=has_data)
        print(dry_run_report(cfg))
        print("preflight: passed" + ("" if has_data else " (no data.paths given: the data was not checked)"))
        return None
    env = init_distributed(cfg.parallel)
    checked = _on_rank0(env, preflight, cfg, env.world_size, share=False)  # before anything is allocated
    if env.rank != 0:  # rank 0 checked everything; the others open the data for themselves
        checked = open_data(cfg)
    load_path = _on_rank0(env, prepare_save_folder, cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, env.device, env.mesh, init=not load_path)  # a load overwrites every parameter
    optimizer = build_optimizer(model, cfg.optimizer)
    state, trainer_state, run_hash = TrainState(), None, None
    if load_path:
        state, trainer_state, run_hash = restore(cfg, load_path, model, optimizer)
    bolt_on = state.step if (load_path and cfg.reset_optimizer_state and trainer_state) else None
    loader = build_train_loader(
        checked.dataset,
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
    run = Run(cfg, env, model, optimizer, loader, state, hooks=hooks or Hooks(), run_hash=run_hash)
    for hook in run.hooks.after_build:
        hook(run)
    return _loop(run, checked.eval_sets, bolt_on)


def _loop(run: Run, eval_sets: dict, bolt_on: int | None) -> TrainResult:
    cfg, env, state = run.cfg, run.env, run.state
    sampler = order_sampler(run.loader)
    seq = cfg.model.max_sequence_length
    tokens_per_batch = cfg.global_train_batch_size * seq
    max_steps = parse_duration(cfg.max_duration, sampler.batches_per_epoch, tokens_per_batch)
    stop = min(max_steps, cfg.stop_at) if cfg.stop_at is not None else max_steps
    units_tokens = cfg.scheduler.units == "tokens"
    t_max = max_steps * tokens_per_batch if units_tokens else max_steps
    bolt = None if bolt_on is None else bolt_on * (tokens_per_batch if units_tokens else 1)
    autocast = autocast_dtype(cfg.precision, env.device)
    peak, peak_note = device_peak_flops(env.device, autocast or torch.float32)
    speed = SpeedMeter(flops_per_token(cfg.model, seq), peak)
    run.tracker = Tracker(
        cfg.tracking, run_name=cfg.run_name, save_folder=cfg.save_folder, hparams=config_to_dict(cfg),
        rank=env.rank, total_steps=stop, start_step=state.step, run_hash=run.run_hash,
    )  # fmt: skip
    run.run_hash = run.tracker.run_hash
    if peak is None:
        run.tracker.write(f"MFU not reported: {peak_note}")
    if cfg.precision == "amp_bf16" and autocast is None:
        run.tracker.write(
            "precision: amp_bf16 runs as fp32 here (bf16 matrix products on a CPU are ~100x slower)"
        )
    result = TrainResult(run.model, state, None)
    try:
        if cfg.eval_on_load and eval_sets:
            result.eval_history.append((state.step, _evaluate(run, eval_sets)))
        iterator = _epoch_iterator(run, sampler)
        while state.step < stop:
            batch = next(iterator)
            start = time.perf_counter()
            progress = (state.step + 1) * (tokens_per_batch if units_tokens else 1)
            metrics = train_step(
                run.model, run.optimizer, batch,
                lr=lr_at(cfg.scheduler, cfg.optimizer.learning_rate, progress, t_max, bolt),
                microbatch_size=cfg.device_train_microbatch_size,
                max_grad_norm=max_grad_norm_at(cfg.scheduler, cfg.max_grad_norm, progress),
                z_loss_multiplier=cfg.auxiliary_loss_multiplier if cfg.softmax_auxiliary_loss else 0.0,
                normalization=cfg.loss_normalization, autocast_dtype=autocast, dp_group=env.dp_group,
            )  # fmt: skip
            speed.record(time.perf_counter() - start, metrics.batch_tokens)
            state.step += 1
            state.tokens_seen += tokens_per_batch
            state.examples_seen_this_epoch = loader_state_dict(run.loader)["global_position"]
            for hook in run.hooks.after_step:
                hook(run, batch, metrics)
            run.tracker.advance(state.step)
            if state.step % cfg.console_log_interval == 0 or state.step == stop:
                _log(run, _train_metrics(metrics, speed, env), {"subset": "train"})
            if _due(cfg.eval_interval, state.step, stop) and eval_sets:
                result.eval_history.append((state.step, _evaluate(run, eval_sets)))
            for sharded in saves_due(cfg, state.step, stop):
                result.checkpoint = _save(run, sharded)
    finally:
        run.tracker.close()
    return result


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast for amp_bf16 on accelerators; None (fp32) otherwise, also for amp_bf16 on a CPU."""
    return torch.bfloat16 if precision == "amp_bf16" and device.type != "cpu" else None


def _log(run: Run, metrics: dict, context: dict) -> None:
    for hook in run.hooks.before_log:
        hook(run, run.state.step, metrics, context)
    run.tracker.log(run.state.step, metrics, context)


def _epoch_iterator(run: Run, sampler):
    """Batches across epochs; each epoch's global order is written to train_data/global_indices.npy."""
    while True:
        iterator = iter(run.loader)
        if run.env.rank == 0:
            write_global_indices(sampler.global_indices(), run.cfg.save_folder)
        run.state.epoch = sampler.epoch
        yielded = False
        for batch in iterator:
            yielded = True
            yield batch
        if not yielded:
            raise ConfigError("the data loader yielded no batch: the global batch is larger than the dataset")
        run.state.examples_seen_this_epoch = 0


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


def _evaluate(run: Run, eval_sets: dict) -> dict[str, float]:
    out = {}
    autocast = autocast_dtype(run.cfg.precision, run.env.device)
    for label, dataset in eval_sets.items():
        metrics = evaluate_lm(
            run.model, dataset, batch_size=run.cfg.eval.device_eval_batch_size,
            max_batches=run.cfg.eval.eval_subset_num_batches, rank=run.env.dp_rank, world_size=run.env.dp_size,
            autocast_dtype=autocast,
        )  # fmt: skip
        _log(run, metrics, {"subset": "eval", "dataset": label})
        out.update({f"{label}/{k}": v for k, v in metrics.items()})
    return out


def _save(run: Run, sharded: bool) -> str:
    """Write one checkpoint of the kind asked (collective), then tell the hooks."""
    cfg = run.cfg
    keep = cfg.save_num_checkpoints_to_keep if sharded else cfg.save_num_unsharded_checkpoints_to_keep
    path = ckpt.save_checkpoint(
        cfg.save_folder, run.state.step, run.model, run.optimizer, trainer_state_dict(run), config_to_dict(cfg),
        sharded=sharded, keep=keep,
    )  # fmt: skip
    run.tracker.write(f"[step {run.state.step}] checkpoint saved: {path}")
    for hook in run.hooks.after_save:
        hook(run, path)
    return path
