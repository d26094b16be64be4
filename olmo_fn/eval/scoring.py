"""Score many continuations with few forward passes: sum of log p(continuation | context) for each.

An item is (row, first, targets): the model reads `row`, and the logits at positions first, first + 1, ...
score the tokens of `targets` (the original's query / ctx_len - 1 / continuation layout). The plan:
- items are grouped by their context (row[:first + 1]); a group's distinct continuation tails
  (row[first + 1:]) are packed after one copy of the context, each tail attending to the context and to
  itself only, with the positions it would have alone (an attention mask and RoPE positions), so a shared
  context is read once per question; a tail that is a prefix of another is read as part of it, and the
  choices of a multiple-choice question whose continuations are single tokens (" A", " B", ...) cost one
  context in all;
- rows are sorted by length (longest first) and cut into batches of `batch_size` rows, right-padded;
- only the scored positions reach the output head, and several tokens can be scored at one position.
The plan does not depend on the number of ranks: batch i runs on data-parallel rank i % dp_size, every rank
runs the same number of forward passes (a rank out of batches runs a one-token dummy), and the scores are
summed over the data-parallel group, so every rank gets the scores one process would compute, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from olmo_fn.loss import IGNORE_INDEX

Item = tuple[tuple[int, ...], int, tuple[int, ...]]


@dataclass
class Plan:
    rows: list[tuple[int, ...]]
    """The rows to read, longest first."""
    positions: list[list[int] | None]
    """Per row: the RoPE position of each token (None: 0, 1, ...)."""
    segments: list[list[int] | None]
    """Per packed row: 0 for the context, i for the i-th tail (None: one causal sequence)."""
    targets: list[dict[int, list[int]]]
    """Per row: position -> the distinct tokens scored there."""
    spots: list[list[tuple[int, int, int]]]
    """Per row: (item, position, index of the token among the position's) of each scored token."""
    batches: list[range]
    """Row indices of each forward pass."""


def _prefix_owners(seqs) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Each sequence -> the longest one it is a prefix of (itself if none)."""
    unique = sorted(set(seqs))
    owner: dict[tuple[int, ...], tuple[int, ...]] = {}
    for i in range(len(unique) - 1, -1, -1):  # in sorted order a sequence's extensions follow it
        seq, nxt = unique[i], unique[i + 1] if i + 1 < len(unique) else None
        owner[seq] = owner[nxt] if nxt is not None and nxt[: len(seq)] == seq else seq
    return owner


def plan(items: Sequence[Item], batch_size: int) -> Plan:
    """Rows, targets and batches for `items` (see the module docstring)."""
    groups: dict[tuple[int, ...], dict[tuple[int, ...], list[int]]] = {}
    for n, (row, first, _) in enumerate(items):
        groups.setdefault(row[: first + 1], {}).setdefault(row[first + 1 :], []).append(n)
    built = []  # (tokens, positions, segments, [(item, start of its tail's segment)])
    for ctx, tails in groups.items():
        owner = _prefix_owners(tails)
        kept = sorted(set(owner.values()))
        tokens, positions, segments, start = list(ctx), list(range(len(ctx))), [0] * len(ctx), {}
        for s, tail in enumerate(kept, 1):
            start[tail] = len(tokens)
            tokens += tail
            positions += range(len(ctx), len(ctx) + len(tail))
            segments += [s] * len(tail)
        packed = len(kept) > 1
        placed = [(n, start[owner[tail]]) for tail, ns in tails.items() for n in ns]
        built.append((tuple(tokens), positions if packed else None, segments if packed else None, placed))
    built.sort(key=lambda b: (-len(b[0]), b[0]))
    targets: list[dict[int, list[int]]] = [{} for _ in built]
    spots: list[list[tuple[int, int, int]]] = [[] for _ in built]
    for r, (_, _, _, placed) in enumerate(built):
        for n, base in placed:
            _, first, tokens = items[n]
            for j, token in enumerate(tokens):
                at = first if j == 0 else base + j - 1
                scored = targets[r].setdefault(at, [])
                if token not in scored:
                    scored.append(token)
                spots[r].append((n, at, scored.index(token)))
    batches = [range(s, min(s + batch_size, len(built))) for s in range(0, len(built), batch_size)]
    return Plan([b[0] for b in built], [b[1] for b in built], [b[2] for b in built], targets, spots, batches)


def _batch_tensors(p: Plan, batch: range, pad_id: int, device, multiple: int):
    """input_ids, labels [B, T, K], and for packed rows the positions and the additive attention bias."""
    length = -(-max(len(p.rows[r]) for r in batch) // multiple) * multiple
    k = max((len(t) for r in batch for t in p.targets[r].values()), default=1)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), length, k), IGNORE_INDEX, dtype=torch.long)
    positions = torch.arange(length).repeat(len(batch), 1)
    segments = torch.zeros((len(batch), length), dtype=torch.long)
    for b, r in enumerate(batch):
        ids[b, : len(p.rows[r])] = torch.tensor(p.rows[r])
        for pos, tokens in p.targets[r].items():
            labels[b, pos, : len(tokens)] = torch.tensor(tokens)
        if p.positions[r] is not None:
            positions[b, : len(p.rows[r])] = torch.tensor(p.positions[r])
            segments[b, : len(p.rows[r])] = torch.tensor(p.segments[r])
    if not segments.any():
        return ids.to(device), labels.to(device), None, None
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    keep = causal & ((segments[:, None, :] == 0) | (segments[:, None, :] == segments[:, :, None]))
    bias = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)[:, None]
    return ids.to(device), labels.to(device), positions.to(device), bias.to(device)


def _add_sums(out: torch.Tensor, lp: torch.Tensor, spots: list[list[tuple[int, int, int]]]) -> None:
    """Add each scored token's log-probability of one batch ([B, T, K]) to its item's sum (float64)."""
    rows = [b for b, row in enumerate(spots) for _ in row]
    if not rows:  # items without a token to score sum to 0
        return
    n, pos, k = (torch.tensor(v, dtype=torch.long) for v in zip(*(s for row in spots for s in row)))
    out.index_add_(0, n, lp[torch.tensor(rows), pos, k].double())


@torch.no_grad()
def score(
    model: nn.Module,
    items: Sequence[Item],
    *,
    batch_size: int,
    pad_token_id: int,
    dp_rank: int = 0,
    dp_size: int = 1,
    dp_group: dist.ProcessGroup | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
    seq_multiple: int = 1,
) -> list[float]:
    """Sum of log-probabilities of each item's targets (float64 sums of fp32 log-probabilities over the
    padded vocabulary), the same on every rank. Collective over dp_group when dp_size > 1. Batches are padded
    to a multiple of `seq_multiple` tokens (the TP degree: sequence parallelism splits the sequence evenly)."""
    device = next(model.parameters()).device
    p = plan(items, batch_size)
    mine = p.batches[dp_rank::dp_size]
    n_passes = -(-len(p.batches) // dp_size)
    out = torch.zeros(len(items), dtype=torch.float64)
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, autocast_dtype, enabled=autocast_dtype is not None)
    for i in range(n_passes):
        positions = bias = None
        if i < len(mine):
            ids, labels, positions, bias = _batch_tensors(p, mine[i], pad_token_id, device, seq_multiple)
        else:  # a dummy pass: same collectives, nothing scored
            ids = torch.full((1, seq_multiple), pad_token_id, dtype=torch.long, device=device)
            labels = torch.full((1, seq_multiple, 1), IGNORE_INDEX, dtype=torch.long, device=device)
        with autocast:
            lp = model(ids, positions=positions, labels=labels, per_token=True, attention_bias=bias).cpu()
        if i < len(mine):
            _add_sums(out, lp, [p.spots[r] for r in mine[i]])
        if progress is not None:
            progress(i + 1, n_passes)
    model.train(was_training)
    if dp_size > 1:
        out = out.to(device)
        dist.all_reduce(out, group=dp_group)  # each item was scored on exactly one data-parallel rank
    return out.tolist()
