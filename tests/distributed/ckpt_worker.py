"""Worker for the multi-process checkpoint tests: run under torchrun (gloo, CPU) or as a plain process.

save DIR          FSDP2 on all ranks: 2 training steps, then a sharded and an unsharded checkpoint
load DIR          FSDP2 on all ranks: load the sharded one; rank 0 checks it against the unsharded one
load_full PATH    FSDP2 on all ranks: load a full-state checkpoint (any URL); print a weight fingerprint
writers DIR       one process that, for each line read on stdin, forks a writer saving forever into DIR
                  (for the kill test; the fork spares each writer the import of torch) and waits for it

Under torchrun several MODE ARG pairs run one after the other in the same launch.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
from torch.distributed.fsdp import fully_shard

from olmo_fn.dist import shutdown_distributed

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint, save_checkpoint  # noqa: E402
from olmo_fn.checkpoint.native import native_source  # noqa: E402
from olmo_fn.checkpoint.source import collect  # noqa: E402
from tests.checkpoint.helpers import config_dict, tiny_cfg, trained, trainer_state  # noqa: E402


def _fsdp_model(cfg, rank, world):
    model, opt = trained(cfg, steps=0)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    return model, opt


def save(folder):
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = tiny_cfg()
    model, opt = _fsdp_model(cfg, rank, world)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        tokens = torch.randint(0, cfg.vocab_size, (2 * world, 16), generator=gen)[2 * rank : 2 * rank + 2]
        model(tokens).float().logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    state = {**trainer_state(2), "world_size": world, "data_loader": {"rank": rank}}
    for sharded in (True, False):
        save_checkpoint(folder, 2, model, opt, state, config_dict(cfg), sharded=sharded, keep=1)


def load(folder):
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = tiny_cfg()
    model, opt = _fsdp_model(cfg, rank, world)
    loaded = load_checkpoint(os.path.join(folder, "step2"), model, opt)
    written = loaded.trainer_state["world_size"]  # ranks the writer did not have get its rank 0's state
    assert loaded.trainer_state["data_loader"] == {"rank": rank if rank < written else 0}, (
        loaded.trainer_state
    )
    msd, osd = get_state_dict(
        model, opt, options=StateDictOptions(full_state_dict=True, flatten_optimizer_state_dict=True)
    )
    if rank == 0:
        reference = collect(native_source(os.path.join(folder, "step2-unsharded")))
        model_ref = {k[len("model.") :]: v for k, v in reference.items() if k.startswith("model.")}
        assert sorted(msd) == sorted(model_ref)
        assert all(torch.equal(msd[k], model_ref[k]) for k in msd)
        optim_ref = {k[len("optim.") :]: v for k, v in reference.items() if k.startswith("optim.")}
        assert optim_ref and all(torch.equal(osd[k], v) for k, v in optim_ref.items()), (
            "optimizer state differs"
        )
        print(f"LOADED OK world={world}", flush=True)


def load_full(path):
    """Load a full-state checkpoint into an FSDP2 model and optimizer; print a fingerprint of the weights."""
    from torch.distributed.tensor import DTensor

    cfg = model_config_of_checkpoint(path)
    model, opt = _fsdp_model(cfg, dist.get_rank(), dist.get_world_size())
    load_checkpoint(path, model, opt)
    full = lambda t: (t.full_tensor() if isinstance(t, DTensor) else t).double()  # noqa: E731
    total = sum(full(p).sum().item() for p in model.parameters())
    moments = sum(full(opt.state[p]["exp_avg"]).abs().sum().item() for p in model.parameters())
    print(f"FINGERPRINT rank={dist.get_rank()} {total:.10e} {moments:.10e}", flush=True)


def writer(folder):
    cfg = tiny_cfg(
        d_model=256, n_heads=4, n_layers=4, mlp_hidden_size=1024, vocab_size=4000, embedding_size=4096
    )
    model, opt = trained(cfg, steps=1)
    step = 0
    while True:
        step += 1
        save_checkpoint(
            folder, step, model, opt, trainer_state(step), config_dict(cfg), sharded=step % 2 == 0, keep=2
        )
        print(f"saved {step}", flush=True)


def writers(folder):
    """For each line on stdin: fork a writer, print `writer PID`, wait until it is killed, print `killed PID`."""
    for _ in sys.stdin:
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                writer(folder)
            finally:
                os._exit(1)
        print(f"writer {pid}", flush=True)
        os.waitpid(pid, 0)
        print(f"killed {pid}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "writers":
        writers(sys.argv[2])
    else:
        dist.init_process_group("gloo")
        try:
            for mode, arg in zip(sys.argv[1::2], sys.argv[2::2]):
                {"save": save, "load": load, "load_full": load_full}[mode](arg)
        finally:
            shutdown_distributed()
