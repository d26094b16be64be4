"""The training loop: build from a TrainConfig, resume, run steps, evaluate, checkpoint, track.

experiment file -> TrainConfig -> build: model (meta), init/load, optimizer, loader
                -> loop: batch -> train_step -> metrics -> tracker / eval / checkpoint
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass, field

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
from olmo_fn.eval.downstream import metric_key
from olmo_fn.eval.evaluators import run_downstream
from olmo_fn.loss import ORIGINAL_Z_LOSS_MULTIPLIER
from olmo_fn.metrics import CPU_PEAK, SpeedMeter, device_peak_flops, peak_memory_bytes
from olmo_fn.model import Transformer, flops_per_token, init_weights
from olmo_fn.optim import build_optimizer, clip_limit, lr_at
from olmo_fn.parallel import parallelize
from olmo_fn.preemption import PREEMPTED_EXIT_STATUS, StopSignals, agreed_stop, ignore_signals, signal_name
from olmo_fn.preflight import Checked, check_save_folder, open_data, preflight
from olmo_fn.run_context import (
    Hooks,
    Run,
    TrainState,
    checkpoint_notes,
    load_note,
    original_trainer_note,
    saves_due,
    setting_notes,
    stop_save_kind,
    trainer_state_dict,
)
from olmo_fn.spikes import SpikeWindow, spike_metrics
from olmo_fn.tracking import Tracker, format_metrics
from olmo_fn.train_step import train_step

log = logging.getLogger("olmo_fn")


@dataclass
class TrainResult:
    model: nn.Module
    state: TrainState
    checkpoint: str | None
    eval_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    stopped_by: str | None = None
    """The signal that stopped the run early (its checkpoint is `checkpoint`); None when it ran to the end."""


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


def prepare_save_folder(cfg: TrainConfig) -> tuple[str | None, bool]:
    """Find what to load: (this run's latest save, True) with --try_load_latest_save, else (load_path,
    False); clear the folder for --save_overwrite, write config.yaml. Run by rank 0 only (see train)."""
    latest = ckpt.find_latest(cfg.save_folder)
    if latest is not None and not cfg.try_load_latest_save:
        check_save_folder(cfg)  # preflight said so already, unless the folder changed since
        remove_checkpoints(cfg.save_folder)
    write_config(cfg.save_folder, config_to_dict(cfg))
    if latest is not None and cfg.try_load_latest_save:
        return latest, True
    return cfg.load_path, False


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


def restore(
    cfg: TrainConfig, path: str, model: nn.Module, optimizer, *, resuming: bool = False
) -> tuple[TrainState, dict | None, str | None, str]:
    """Load a checkpoint into model (and optimizer); the trainer state unless reset_trainer_state. Resuming
    the run's own latest save (try_load_latest_save) restores everything, whatever the reset flags say (they
    are for the first start from load_path), as in the original. Also returns the line saying so."""
    keep_optimizer = resuming or not cfg.reset_optimizer_state
    loaded = ckpt.load_checkpoint(
        path, model, optimizer if keep_optimizer else None, verify=cfg.verify_checkpoint
    )
    ts = loaded.trainer_state
    reset = [] if keep_optimizer else ["optimizer state (the learning rate warms up again)"]
    if ts is None or (cfg.reset_trainer_state and not resuming):
        reset += ["trainer state (step, data position)"] if ts is not None else []
        return TrainState(), None, None, load_note(path, loaded.kind, None, reset)
    state = TrainState(
        ts["step"], ts.get("tokens_seen", 0), ts.get("epoch", 0), ts.get("examples_seen_this_epoch", 0)
    )
    return state, ts, ts.get("aim_run_hash"), load_note(path, loaded.kind, state.step, reset)


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

        has_data = bool(cfg.data.paths or cfg.data.paths_file or cfg.data.datasets)
        preflight(cfg, math.prod(plan_degrees(cfg)), with_data=has_data)
        print(dry_run_report(cfg))
        print("preflight: passed" + ("" if has_data else " (no data.paths given: the data was not checked)"))
        return None
    env = init_distributed(cfg.parallel)
    checked = _on_rank0(env, preflight, cfg, env.world_size, share=False)  # before anything is allocated
    if env.rank != 0:  # rank 0 checked everything; the others open the data for themselves
        checked = open_data(cfg)
    load_path, resuming = _on_rank0(env, prepare_save_folder, cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, env.device, env.mesh, init=not load_path)  # a load overwrites every parameter
    optimizer = build_optimizer(model, cfg.optimizer)
    state, trainer_state, run_hash, loaded = TrainState(), None, None, None
    if load_path:
        state, trainer_state, run_hash, loaded = restore(cfg, load_path, model, optimizer, resuming=resuming)
    reset_optimizer = cfg.reset_optimizer_state and not resuming
    bolt_on = state.step if (load_path and reset_optimizer and trainer_state) else None
    loader = build_train_loader(
        checked.dataset,
        cfg.data,
        global_batch_size=cfg.global_train_batch_size,
        seed=cfg.data.seed if cfg.data.seed is not None else cfg.seed,
        rank=env.dp_rank,  # TP ranks of one data-parallel rank read the same batches
        world_size=env.dp_size,
        epoch=state.epoch,
        start_position=state.examples_seen_this_epoch,
        worker_init_fn=functools.partial(ignore_signals, cfg.stop_signals),
    )
    if trainer_state is not None and trainer_state.get("data_loader"):
        load_loader_state_dict(loader, trainer_state["data_loader"])
    run = Run(cfg, env, model, optimizer, loader, state, hooks=hooks or Hooks(), run_hash=run_hash)
    run.notes = [loaded] if loaded else []
    run.spikes = SpikeWindow.from_config(cfg.optimizer, (trainer_state or {}).get("spikes"))
    for hook in run.hooks.after_build:
        hook(run)
    return _loop(run, checked, bolt_on)


def _loop(run: Run, evals: Checked, bolt_on: int | None) -> TrainResult:
    cfg, env, state = run.cfg, run.env, run.state
    sampler = order_sampler(run.loader)
    seq = cfg.model.max_sequence_length
    tokens_per_batch = cfg.global_train_batch_size * seq
    max_steps = parse_duration(cfg.max_duration, sampler.batches_per_epoch, tokens_per_batch)
    stop = min(max_steps, cfg.stop_at) if cfg.stop_at is not None else max_steps
    unit = tokens_per_batch if cfg.scheduler.units == "tokens" else 1  # progress per step
    t_max, bolt = max_steps * unit, None if bolt_on is None else bolt_on * unit
    z_loss = z_loss_multiplier(cfg)
    autocast = autocast_dtype(cfg.precision, env.device)
    peak, peak_note = device_peak_flops(env.device, autocast or torch.float32)
    reprobe = CPU_PEAK.probe if env.device.type == "cpu" else None  # an MFU above 1: measure again
    speed = SpeedMeter(flops_per_token(cfg.model, seq), peak, reprobe=reprobe)
    run.tracker = Tracker(
        cfg.tracking, run_name=cfg.run_name, save_folder=cfg.save_folder, hparams=config_to_dict(cfg),
        rank=env.rank, total_steps=stop, start_step=state.step, run_hash=run.run_hash,
    )  # fmt: skip
    run.run_hash = run.tracker.run_hash
    has_evals = bool(evals.eval_sets or evals.downstream)
    notes = [*evals.notes, *setting_notes(cfg, max_steps, stop, unit, has_evals)]
    notes.append(f"MFU not reported: {peak_note}" if peak is None else None)
    if cfg.precision == "amp_bf16" and autocast is None:
        notes.append("precision: amp_bf16 runs as fp32 here (bf16 matrix products on a CPU are ~100x slower)")
    for note in (*run.notes, original_trainer_note(cfg), *checkpoint_notes(cfg), *notes):
        if note:
            run.tracker.write(note)
    result = TrainResult(run.model, state, None)
    if state.step >= stop:  # a resume with nothing left to do
        limit = f"stop_at={cfg.stop_at}" if cfg.stop_at is not None and cfg.stop_at < max_steps else None
        run.tracker.write(
            f"nothing to train: the loaded checkpoint is at step {state.step} and the run ends at step {stop} "
            f"({limit or f'max_duration={cfg.max_duration}'}); raise {'--stop_at' if limit else '--max_duration'}, "
            "or pass --reset_trainer_state to train the loaded weights from step 0"
        )
        run.tracker.close()
        return result
    with StopSignals(cfg.stop_signals) as signals, contextlib.closing(run.tracker):
        if cfg.eval_on_load and has_evals:
            result.eval_history.append((state.step, _evaluate(run, evals)))
        iterator = _epoch_iterator(run, sampler)
        while state.step < stop:
            batch = next(iterator)
            start = time.perf_counter()
            n = state.step + 1
            metrics = train_step(
                run.model, run.optimizer, batch,
                lr=lr_at(cfg.scheduler, cfg.optimizer.learning_rate, n * unit, t_max, bolt),
                microbatch_size=cfg.device_train_microbatch_size,
                max_grad_norm=clip_limit(
                    cfg.scheduler, cfg.max_grad_norm, n, unit, lagged=cfg.original_trainer.lagged_clip_warmup
                ),
                z_loss_multiplier=z_loss, normalization=cfg.loss_normalization, autocast_dtype=autocast,
                dp_group=env.dp_group, spikes=run.spikes,
                document_eos=cfg.model.eos_token_id if cfg.data.generate_doc_lengths else None,
            )  # fmt: skip
            speed.record(time.perf_counter() - start, metrics.batch_tokens)
            state.step += 1
            state.tokens_seen += tokens_per_batch
            state.examples_seen_this_epoch = loader_state_dict(run.loader)["global_position"]
            if metrics.skipped:
                run.tracker.write(f"[step {state.step}] optimizer step skipped: {metrics.skipped}")
            for hook in run.hooks.after_step:
                hook(run, batch, metrics)
            run.tracker.advance(state.step)
            console = state.step % cfg.console_log_interval == 0 or state.step == stop
            if console or state.step % max(cfg.tracking.aim_log_interval, 1) == 0:
                _log(run, _train_metrics(run, metrics, speed), {"subset": "train"}, console)
            if _due(cfg.eval_interval, state.step, stop) and has_evals:
                result.eval_history.append((state.step, _evaluate(run, evals)))
            run.tracker.end_step()
            due = saves_due(cfg, state.step, stop)
            for sharded in due:
                result.checkpoint = _save(run, sharded)
            if state.step < stop and (number := agreed_stop(signals, env.device)):
                _stop_early(run, result, signal_name(number), saved=bool(due))
                break
    return result


def _stop_early(run: Run, result: TrainResult, name: str, saved: bool) -> None:
    """A stop signal reached some rank: write the checkpoint (unless this step wrote one) and say so."""
    kind = stop_save_kind(run.cfg)
    if not saved and kind is not None:
        result.checkpoint = _save(run, kind)
    where = f"checkpoint {result.checkpoint}" if result.checkpoint else "no checkpoint (both kinds are off)"
    run.tracker.write(
        f"[step {run.state.step}] stopped by {name}: {where}; exit status {PREEMPTED_EXIT_STATUS}, "
        "continue with --try_load_latest_save"
    )
    result.stopped_by = name


def z_loss_multiplier(cfg: TrainConfig) -> float:
    """The z-loss multiplier a run applies: 0 without z-loss; the original trainer's 1e-4 when it is told to
    do what that trainer did; auxiliary_loss_multiplier otherwise."""
    if not cfg.softmax_auxiliary_loss:
        return 0.0
    if cfg.original_trainer.builtin_z_loss_multiplier:
        return ORIGINAL_Z_LOSS_MULTIPLIER
    return cfg.auxiliary_loss_multiplier


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast for amp_bf16 on accelerators; None (fp32) otherwise, also for amp_bf16 on a CPU."""
    return torch.bfloat16 if precision == "amp_bf16" and device.type != "cpu" else None


def _log(run: Run, metrics: dict, context: dict, console: bool = True) -> None:
    for hook in run.hooks.before_log:
        hook(run, run.state.step, metrics, context)
    run.tracker.log(run.state.step, metrics, context, console=console)


def _epoch_iterator(run: Run, sampler):
    """Batches across epochs; each epoch's global order is written to train_data/global_indices.npy and kept
    as train_data/global_indices_epoch{E}.npy (tools/inspect_data.py reads every epoch's). A run
    resumed at the very end of an epoch finds nothing left in it and goes on with the next."""
    resumed = run.state.examples_seen_this_epoch > 0
    while True:
        iterator = iter(run.loader)
        if run.env.rank == 0:
            write_global_indices(sampler.global_indices(), run.cfg.save_folder, sampler.epoch)
        run.state.epoch = sampler.epoch
        yielded = False
        for batch in iterator:
            yielded = True
            yield batch
        if not yielded and not resumed:
            raise ConfigError("the data loader yielded no batch: the global batch is larger than the dataset")
        resumed = False
        run.state.examples_seen_this_epoch = 0


def _due(interval: int | None, step: int, stop: int) -> bool:
    return step == stop or (interval is not None and interval > 0 and step % interval == 0)


def _train_metrics(run: Run, m, speed: SpeedMeter) -> dict[str, float | None]:
    """A step's metrics under the original's W&B keys and with its normalisation: loss sums over the batch
    divided by every position of it (B x T, also each row's last, which has no target)."""
    env, cfg = run.env, run.cfg
    ce = m.ce_sum / max(m.batch_tokens, 1)
    out: dict[str, float | None] = {"train/CrossEntropyLoss": ce, "train/Perplexity": math.exp(min(ce, 50.0))}
    if cfg.softmax_auxiliary_loss:
        out["train/ZLoss"] = m.z_sum / max(m.batch_tokens, 1)
    out["train/CrossEntropyLoss.per_label_token"] = m.ce_loss
    out["optim/total_grad_norm"] = m.grad_norm
    out.update(spike_metrics(run.spikes, m.skipped is not None))
    for i, group in enumerate(run.optimizer.param_groups):
        out[f"optim/learning_rate_group{i}"] = float(group["lr"])
    seconds = speed.seconds_per_step()
    out["throughput/total_tokens"] = run.state.tokens_seen
    out["throughput/device/tokens_per_second"] = speed.tokens_per_second() / env.world_size
    out["throughput/device/batches_per_second"] = 1.0 / seconds if seconds else None
    out["throughput/device/mfu"] = speed.mfu(env.world_size)
    memory = "GPU" if env.device.type == "cuda" else "CPU"
    out[f"System/Peak {memory} Memory (MB)"] = peak_memory_bytes(env.device) / 2**20
    return out


def _evaluate(run: Run, evals: Checked) -> dict[str, float]:
    out = {}
    autocast = autocast_dtype(run.cfg.precision, run.env.device)
    for label, dataset in evals.eval_sets.items():
        metrics = evaluate_lm(
            run.model, dataset, batch_size=run.cfg.eval.device_eval_batch_size,
            max_batches=run.cfg.eval.eval_subset_num_batches, rank=run.env.dp_rank, world_size=run.env.dp_size,
            autocast_dtype=autocast,
        )  # fmt: skip
        keyed = {f"eval/{label}/{k}": v for k, v in metrics.items()}
        _log(run, keyed, {"subset": "eval", "dataset": label})
        out.update({f"{label}/{k}": v for k, v in metrics.items()})
    if evals.downstream:  # every task in one pass; one console line for them all
        shown = {}
        for label, metrics in run_downstream(run.model, evals.downstream, run.env, autocast).items():
            keyed = {metric_key(label, m): v for m, v in metrics.items()}
            _log(run, keyed, {"subset": "eval", "dataset": label}, console=False)
            out.update(keyed)
            shown.update({f"{label}_{m}": v for m, v in metrics.items()})
        run.tracker.write(f"[step {run.state.step}] downstream: {format_metrics(shown)}")
    return out


def _save(run: Run, sharded: bool) -> str:
    """Write one checkpoint of the kind asked (collective), then tell the hooks."""
    cfg = run.cfg
    keep = cfg.save_num_checkpoints_to_keep if sharded else cfg.save_num_unsharded_checkpoints_to_keep
    for hook in run.hooks.before_save:
        hook(run, sharded)
    path = ckpt.save_checkpoint(
        cfg.save_folder, run.state.step, run.model, run.optimizer, trainer_state_dict(run), config_to_dict(cfg),
        sharded=sharded, keep=keep,
    )  # fmt: skip
    run.tracker.write(f"[step {run.state.step}] checkpoint saved: {path}")
    run.tracker.flush()
    for hook in run.hooks.after_save:
        hook(run, path)
    return path
