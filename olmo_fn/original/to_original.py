"""olmo_fn's TrainConfig as an original OLMo TrainConfig dict: what the original trainer would need to run the
same training, and what it cannot express or would do differently."""

from __future__ import annotations

import copy
from typing import Any

from olmo_fn.config import TrainConfig
from olmo_fn.original.mapping import original_model_section
from olmo_fn.original.schema import OPTIONAL_STRUCTS, SCHEMA


def original_from_train_config(cfg: TrainConfig) -> tuple[dict[str, Any], list[str]]:
    """(original-style TrainConfig dict, notes): what the original trainer would need to run `cfg`; notes
    name what it cannot express or would do differently."""
    tree = copy.deepcopy(SCHEMA)
    tree["model"] = original_model_section(cfg.model)
    o, s, d = cfg.optimizer, cfg.scheduler, cfg.data
    tree["optimizer"].update(
        name="adamw", learning_rate=o.learning_rate, weight_decay=o.weight_decay, betas=list(o.betas), eps=o.eps,
        decay_norm_and_bias=o.decay_norm_and_bias, decay_embeddings=o.decay_embeddings,
    )  # fmt: skip
    tree["scheduler"].update(
        name=s.name, units=s.units, t_warmup=s.t_warmup, t_max=s.t_max, alpha_f=s.alpha_f,
        warmup_min_lr=s.warmup_min_lr, grad_clip_warmup_steps=s.grad_clip_warmup_steps,
        grad_clip_warmup_factor=s.grad_clip_warmup_factor,
    )  # fmt: skip
    tree["data"].update(
        paths=d.paths or None, datasets=d.datasets, label_mask_paths=d.label_mask_paths, memmap_dtype=d.memmap_dtype,
        generate_attention_mask=d.generate_attention_mask, generate_doc_lengths=d.generate_doc_lengths,
        num_workers=d.num_workers, drop_last=d.drop_last, pin_memory=d.pin_memory, prefetch_factor=d.prefetch_factor, persistent_workers=d.persistent_workers,
        timeout=d.timeout, seed=d.seed,
        instance_filter=None if d.instance_filter is None else vars(d.instance_filter).copy(),
    )  # fmt: skip
    tree["evaluators"] = [
        {"label": label, "type": "lm", "data": {**copy.deepcopy(SCHEMA["data"]), "paths": list(paths),
                                                "drop_last": True}, "device_eval_batch_size": None,
         "subset_num_batches": None}
        for label, paths in cfg.eval.datasets.items()
    ]  # fmt: skip
    tree["evaluators"] += [
        {"label": ev.label, "type": ev.type, "data": {**copy.deepcopy(SCHEMA["data"]), "paths": ev.paths,
                                                      "datasets": ev.datasets},
         "device_eval_batch_size": ev.device_eval_batch_size, "subset_num_batches": ev.subset_num_batches}
        for ev in cfg.evaluators
        if ev.metric is None
    ]  # fmt: skip
    p = cfg.parallel
    if p.dp_replicate > 1:
        sharding = "HYBRID_SHARD" if p.reshard_after_forward else "_HYBRID_SHARD_ZERO2"
    else:
        sharding = "FULL_SHARD" if p.reshard_after_forward else "SHARD_GRAD_OP"
    tree["fsdp"].update(
        sharding_strategy=sharding, wrapping_strategy="by_block_and_size",
        precision="pure" if p.fsdp_reduce_dtype == "bfloat16" else "mixed",
        hybrid_sharding_num_model_replicas=p.dp_replicate if p.dp_replicate > 1 else None,
    )  # fmt: skip
    ac_names = {1: "whole_layer", 2: "one_in_two", 3: "one_in_three", 4: "one_in_four"}
    for name in (
        "run_name", "seed", "global_train_batch_size", "device_train_microbatch_size", "precision",
        "max_grad_norm", "softmax_auxiliary_loss", "auxiliary_loss_multiplier", "save_folder", "save_overwrite",
        "save_interval", "save_interval_unsharded", "save_num_checkpoints_to_keep",
        "save_num_unsharded_checkpoints_to_keep", "load_path", "reset_trainer_state", "reset_optimizer_state",
        "try_load_latest_save", "stop_at", "eval_interval", "eval_on_load", "console_log_interval",
    ):  # fmt: skip
        tree[name] = getattr(cfg, name)
    tree.update(
        max_duration=_duration(cfg.max_duration), device_eval_batch_size=cfg.eval.device_eval_batch_size,
        eval_subset_num_batches=cfg.eval.eval_subset_num_batches, tokenizer={
            "identifier": cfg.tokenizer.identifier or SCHEMA["tokenizer"]["identifier"], "truncate_direction": "right"},
        compile={**OPTIONAL_STRUCTS["compile"]} if cfg.compile else None,
        activation_checkpointing=None if p.activation_checkpointing == "none"
        else ac_names.get(p.activation_checkpointing_interval, "whole_layer"),
        no_pre_train_checkpoint=True,
    )  # fmt: skip
    return tree, _inexpressible(cfg)


def _duration(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _inexpressible(cfg: TrainConfig) -> list[str]:
    p, notes = cfg.parallel, []
    if p.tp > 1:
        notes.append(f"parallel.tp={p.tp}: the original has no tensor parallelism")
    if p.float8:
        notes.append("parallel.float8: the original has no float8 training")
    if p.activation_checkpointing != "none" and p.activation_checkpointing_interval not in (1, 2, 3, 4):
        notes.append("parallel.activation_checkpointing_interval: written as whole_layer")
    if cfg.loss_normalization != "batch_tokens":
        notes.append("loss_normalization=label_tokens: the original divides by every token of the batch")
    for ev in cfg.evaluators:
        if ev.metric is not None:
            notes.append(
                f"evaluators: {ev.label}:{ev.metric}: the original scores a task with its own metric only"
            )
    if cfg.optimizer.skip_spikes:
        notes.append("optimizer.skip_spikes: the original trainer never skips a step")
    if cfg.data.paths_file:
        notes.append(f"data.paths_file={cfg.data.paths_file}: list its entries under data.paths")
    if cfg.scheduler.name == "wsd" or cfg.scheduler.name == "constant_with_warmup":
        notes.append(f"scheduler.name={cfg.scheduler.name}: not a schedule of the original trainer")
    if cfg.softmax_auxiliary_loss and not cfg.original_trainer.builtin_z_loss_multiplier:
        if cfg.auxiliary_loss_multiplier != 1e-4:
            notes.append(
                f"auxiliary_loss_multiplier={cfg.auxiliary_loss_multiplier:g}: the original trainer applies 1e-4"
            )
    if cfg.scheduler.grad_clip_warmup_steps is not None and not cfg.original_trainer.lagged_clip_warmup:
        notes.append(
            "scheduler.grad_clip_warmup_steps: the original trainer lags the clip warmup by one step"
        )
    return notes
