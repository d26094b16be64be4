"""Functions that spread a model over a device mesh and wrap it for speed, applied in a fixed order by
`parallelize`: tensor parallel, activation checkpointing, per-block compile, FSDP.

The mesh has three named dimensions, (dp_replicate, dp_shard, tp); a dimension of size 1 costs nothing.
Data-parallel ranks (dp_replicate x dp_shard) read different batches; the ranks of one TP group read the
same batch. Every function acts on the model built on the meta device, before `to_empty` and `init_weights`.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.utils.checkpoint import checkpoint

from olmo_fn.config import ModelConfig, ParallelConfig
from olmo_fn.errors import ConfigError
from olmo_fn.loss_parallel import VocabParallelLMHead

MESH_DIMS = ("dp_replicate", "dp_shard", "tp")


def resolve_degrees(cfg: ParallelConfig, world_size: int) -> tuple[int, int, int]:
    """(dp_replicate, dp_shard, tp) with dp_shard=-1 filled in; ConfigError unless they multiply to world_size."""
    for name in ("dp_replicate", "tp"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"parallel.{name}: must be >= 1, got {getattr(cfg, name)}")
    if cfg.dp_shard == 0 or cfg.dp_shard < -1:
        raise ConfigError(f"parallel.dp_shard: must be >= 1 or -1 (the rest), got {cfg.dp_shard}")
    fixed = cfg.dp_replicate * cfg.tp
    shard = world_size // fixed if cfg.dp_shard == -1 else cfg.dp_shard
    if shard < 1 or cfg.dp_replicate * shard * cfg.tp != world_size:
        raise ConfigError(
            f"parallel: dp_replicate {cfg.dp_replicate} x dp_shard {cfg.dp_shard} x tp {cfg.tp} does not "
            f"make the world size {world_size} (the number of processes torchrun started); change the "
            "degrees, or set parallel.dp_shard=-1 to give data-parallel sharding the rest"
        )
    return cfg.dp_replicate, shard, cfg.tp


def build_mesh(cfg: ParallelConfig, world_size: int, device_type: str) -> DeviceMesh:
    """The (dp_replicate, dp_shard, tp) device mesh over all ranks (the process group must be started)."""
    return init_device_mesh(device_type, resolve_degrees(cfg, world_size), mesh_dim_names=MESH_DIMS)


def dp_mesh_of(mesh: DeviceMesh, device_type: str) -> DeviceMesh:
    """The 1-D mesh of the data-parallel ranks of this TP position (dp_replicate x dp_shard, flattened)."""
    replicate, shard, tp = mesh.shape
    flat = DeviceMesh(device_type, mesh.mesh.reshape(replicate * shard, tp), mesh_dim_names=("dp", "tp"))
    return flat["dp"]


def fsdp_mesh_of(mesh: DeviceMesh) -> DeviceMesh | None:
    """The mesh FSDP shards over: 1-D dp_shard, 2-D (dp_replicate, dp_shard) for HSDP, None without DP."""
    replicate, shard, _ = mesh.shape
    if replicate * shard == 1:
        return None
    return mesh["dp_replicate", "dp_shard"] if replicate > 1 else mesh["dp_shard"]


def check_tp(cfg: ModelConfig, tp: int) -> None:
    """ConfigError unless heads, KV heads, MLP width and vocabulary split evenly over tp ranks."""
    if cfg.weight_tying:
        raise ConfigError(
            "parallel.tp > 1 with model.weight_tying is not supported (the embedding and head would need "
            "one sharding); use tp=1 (FSDP shards a tied model fine) or an untied model"
        )
    sizes = {
        "model.n_heads": cfg.n_heads,
        "n_kv_heads": cfg.effective_n_kv_heads,
        "MLP width": cfg.hidden_size,
        "model.embedding_size": cfg.padded_vocab_size,
    }
    for name, size in sizes.items():
        if size % tp:
            raise ConfigError(f"parallel.tp={tp} does not divide {name} ({size}); pick a tp that divides it")


def _gather_sequence(mesh: DeviceMesh, module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the sequence-sharded first input, all-gathered to the whole sequence."""
    x = DTensor.from_local(args[0], mesh, [Shard(1)]).redistribute(placements=[Replicate()]).to_local()
    return (x, *args[1:])


def _shard_norm_weight(name: str, module: nn.Module, mesh: DeviceMesh) -> None:
    for key, param in list(module.named_parameters(recurse=False)):
        module.register_parameter(key, nn.Parameter(distribute_tensor(param, mesh, [Shard(0)])))


def _width_sharded_in(module: nn.Module, inputs: tuple, mesh: DeviceMesh) -> tuple:
    return tuple(
        DTensor.from_local(t, mesh, [Shard(-1)]) if isinstance(t, torch.Tensor) else t for t in inputs
    )


def _width_sharded_out(module: nn.Module, output: DTensor, mesh: DeviceMesh) -> torch.Tensor:
    return output.redistribute(placements=[Shard(-1)]).to_local()


def _replicated_in(module: nn.Module, inputs: tuple, mesh: DeviceMesh) -> tuple:
    return tuple(
        DTensor.from_local(t, mesh, [Replicate()]) if isinstance(t, torch.Tensor) else t for t in inputs
    )


def _local_out(module: nn.Module, output: DTensor, mesh: DeviceMesh) -> torch.Tensor:
    return output.to_local()


def _replicate_norm(norm: nn.Module, mesh: DeviceMesh) -> None:
    """A norm on whole (replicated) inputs: its weight becomes a Replicate DTensor, so that every
    parameter is a DTensor (one optimizer/clip foreach may not mix them); inputs and outputs stay local."""
    distribute_module(norm, mesh, None, _replicated_in, _local_out)


def apply_tp(
    model: nn.Module, mesh: DeviceMesh, sequence_parallel: bool = True, loss_parallel: bool = True
) -> None:
    """Megatron-style tensor parallelism over the 1-D `mesh`, in place.

    q/k/v, up and gate are column-parallel (each rank holds whole heads / a slice of the MLP width), o and
    down row-parallel. With sequence_parallel the residual stream, the norms and the embedding output are
    split over the sequence between those regions. OLMo 2's QK-norms normalise the full q/k width: their
    input stays width-sharded as a DTensor, so the mean of squares is reduced over the TP ranks (exact).
    clip_qkv is elementwise and runs on the local slices. The head is vocabulary-split (loss parallel, see
    `loss_parallel.tp_head`) or replicated on every TP rank.
    """
    check_tp(model.config, mesh.size())
    seq = Shard(1) if sequence_parallel else Replicate()
    plan = {"embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq)}
    if sequence_parallel:
        plan["lm_head.norm"] = SequenceParallel()  # a DTensor out: tp_head gathers the sequence
    parallelize_module(model, mesh, plan)
    if not sequence_parallel:
        _replicate_norm(model.lm_head.norm, mesh)
    head = model.lm_head
    placement = Shard(0) if loss_parallel else Replicate()
    head.weight = nn.Parameter(distribute_tensor(head.weight, mesh, [placement]))
    head.__class__ = VocabParallelLMHead  # same parameters; its forward assembles the loss over TP ranks
    for block in model.blocks:
        _apply_tp_block(block, mesh, sequence_parallel, seq)


def _apply_tp_block(block: nn.Module, mesh: DeviceMesh, sequence_parallel: bool, seq) -> None:
    plan = {
        **{f"attention.{p}_proj": ColwiseParallel() for p in "qkv"},
        "attention.o_proj": RowwiseParallel(output_layouts=seq),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(output_layouts=seq),
    }
    if sequence_parallel:
        plan["attention_norm"] = SequenceParallel(use_local_output=True)
        plan["mlp_norm"] = SequenceParallel(use_local_output=True)
    parallelize_module(block, mesh, plan)
    if not sequence_parallel:
        _replicate_norm(block.attention_norm, mesh)
        _replicate_norm(block.mlp_norm, mesh)
    if sequence_parallel:  # the attention and the MLP see the whole sequence
        for module in (block.attention, block.mlp):
            module.register_forward_pre_hook(functools.partial(_gather_sequence, mesh))
    for norm in (block.attention.q_norm, block.attention.k_norm):
        if norm is not None:  # full-width QK-norm on width-sharded q/k (see apply_tp)
            distribute_module(norm, mesh, _shard_norm_weight, _width_sharded_in, _width_sharded_out)


def apply_ac(model: nn.Module, interval: int = 1) -> None:
    """Activation checkpointing of every `interval`-th block: keep its input, recompute the rest in backward.

    The block's forward is wrapped in place, so parameter names (checkpoints, init) do not change.
    """
    if interval < 1:
        raise ConfigError(f"parallel.activation_checkpointing_interval: must be >= 1, got {interval}")
    for i, block in enumerate(model.blocks):
        if i % interval == 0:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def apply_compile(model: nn.Module) -> None:
    """torch.compile in place each transformer block (one graph per block shape, reused by every block) and
    the head with its loss (final norm, logits chunk by chunk, cross-entropy, z-loss and their gradient
    fused into a few kernels beside the matmuls). A vocabulary-parallel head (DTensor weight) stays eager.
    """
    for block in model.blocks:
        block.compile()
    head = model.lm_head.weight if model.lm_head.weight is not None else model.embeddings.weight
    if not isinstance(head, DTensor):
        model.lm_head.compile()


def apply_float8(model: nn.Module, device_type: str) -> None:
    """Swap the blocks' Linear layers for torchao's float8 training Linear (CUDA only)."""
    if device_type != "cuda":
        raise ConfigError(
            "parallel.float8: float8 training needs a CUDA GPU (SM89+: H100, L40S, ...); this run is on "
            f"{device_type}. Set parallel.float8=false"
        )
    from torchao.float8 import convert_to_float8_training

    for block in model.blocks:
        convert_to_float8_training(block)


def apply_fsdp(
    model: nn.Module,
    mesh: DeviceMesh,
    param_dtype: torch.dtype = torch.float32,
    reduce_dtype: torch.dtype = torch.float32,
    reshard_after_forward: bool = True,
) -> None:
    """FSDP2 units: the embedding, each block, the final norm + head (kept gathered after forward: backward
    needs it at once), and the root. A tied embedding and head stay together in the root unit.

    FSDP's gradient averaging is off: the loss is already divided by the global token count (train_step).
    """
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    kw = {"mesh": mesh, "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)}
    tied = model.config.weight_tying
    if not tied:
        fully_shard(model.embeddings, reshard_after_forward=reshard_after_forward, **kw)
    for block in model.blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward, **kw)
    if not tied:
        fully_shard(model.lm_head, reshard_after_forward=False, **kw)
    fully_shard(model, **kw)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM


def fsdp_dtypes(cfg: ParallelConfig, device_type: str, precision: str) -> tuple[torch.dtype, torch.dtype]:
    """(param_dtype, reduce_dtype) of FSDP: 'auto' is bf16 on GPUs with amp_bf16, fp32 otherwise."""
    param = cfg.fsdp_param_dtype
    if param == "auto":
        param = "bfloat16" if device_type == "cuda" and precision == "amp_bf16" else "float32"
    return getattr(torch, param), getattr(torch, cfg.fsdp_reduce_dtype)


def parallelize(
    model: nn.Module,
    cfg: ParallelConfig,
    mesh: DeviceMesh | None,
    *,
    compile: bool = False,
    device_type: str = "cpu",
    precision: str = "fp32",
) -> nn.Module:
    """Apply float8, TP, activation checkpointing, compile and FSDP, in that order, to the meta-device model."""
    # 0. float8 swaps module types, so it comes before anything that wraps or shards the Linears.
    if cfg.float8:
        if cfg.tp > 1:
            raise ConfigError("parallel.float8 with parallel.tp > 1 is not supported; use tp=1 with float8")
        apply_float8(model, device_type)
    # 1. TP first: it replaces parameters by DTensors on the tp mesh, which FSDP then shards further.
    if mesh is not None and mesh["tp"].size() > 1:
        apply_tp(model, mesh["tp"], cfg.sequence_parallel, cfg.loss_parallel)
    # 2. Activation checkpointing wraps each block's (TP) forward...
    if cfg.activation_checkpointing == "full":
        apply_ac(model, cfg.activation_checkpointing_interval)
    # 3. ...and compile traces that wrapped forward, one graph per block, before FSDP adds its hooks
    #    (they stay outside the graph).
    if compile:
        apply_compile(model)
    # 4. FSDP last: it shards whatever parameters the steps above left (plain or TP DTensors).
    fsdp_mesh = fsdp_mesh_of(mesh) if mesh is not None else None
    if fsdp_mesh is not None:
        param_dtype, reduce_dtype = fsdp_dtypes(cfg, device_type, precision)
        apply_fsdp(model, fsdp_mesh, param_dtype, reduce_dtype, cfg.reshard_after_forward)
    return model
