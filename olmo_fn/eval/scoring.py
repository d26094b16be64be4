"""Score many continuations with few forward passes: sum of log p(continuation | context) for each.

An item is (row, first, targets): the model reads `row`, and the logits at positions first, first + 1, ...
score the tokens of `targets` (the original's query / ctx_len - 1 / continuation layout). The plan:
- identical rows are read once, and a row that is a prefix of another is read as part of it (causal
  attention: a position's logits depend only on the tokens up to it), so the choices of a multiple-choice
  question whose continuations are single tokens (" A", " B", ...) cost one row in all;
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
    targets: list[dict[int, list[int]]]
    """Per row: position -> the distinct tokens scored there."""
    spots: list[list[tuple[int, int, int]]]
    """Per row: (item, position, index of the token among the position's) of each scored token."""
    batches: list[range]
    """Row indices of each forward pass."""


def plan(items: Sequence[Item], batch_size: int) -> Plan:
    """Rows, targets and batches for `items` (see the module docstring)."""
    unique = sorted({row for row, _, _ in items})
    owner: dict[tuple[int, ...], tuple[int, ...]] = {}
    for i in range(len(unique) - 1, -1, -1):  # in sorted order a row's extensions follow it
        row, nxt = unique[i], unique[i + 1] if i + 1 < len(unique) else None
        owner[row] = owner[nxt] if nxt is not None and nxt[: len(row)] == row else row
    rows = sorted(set(owner.values()), key=lambda r: (-len(r), r))
    index = {row: i for i, row in enumerate(rows)}
    targets: list[dict[int, list[int]]] = [{} for _ in rows]
    spots: list[list[tuple[int, int, int]]] = [[] for _ in rows]
    for n, (row, first, tokens) in enumerate(items):
        r = index[owner[row]]
        for j, token in enumerate(tokens):
            scored = targets[r].setdefault(first + j, [])
            if token not in scored:
                scored.append(token)
            spots[r].append((n, first + j, scored.index(token)))
    batches = [range(s, min(s + batch_size, len(rows))) for s in range(0, len(rows), batch_size)]
    return Plan(rows, targets, spots, batches)


def _batch_tensors(
    p: Plan, batch: range, pad_id: int, device, multiple: int
) -> tuple[torch.Tensor, torch.Tensor]:
    length = -(-max(len(p.rows[r]) for r in batch) // multiple) * multiple
    k = max((len(t) for r in batch for t in p.targets[r].values()), default=1)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), length, k), IGNORE_INDEX, dtype=torch.long)
    for b, r in enumerate(batch):
        ids[b, : len(p.rows[r])] = torch.tensor(p.rows[r])
        for pos, tokens in p.targets[r].items():
            labels[b, pos, : len(tokens)] = torch.tensor(tokens)
    return ids.to(device), labels.to(device)


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
    progress: Callable[[int], None] | None = None,
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
        if i < len(mine):
            ids, labels = _batch_tensors(p, mine[i], pad_token_id, device, seq_multiple)
        else:  # a dummy pass: same collectives, nothing scored
            ids = torch.full((1, seq_multiple), pad_token_id, dtype=torch.long, device=device)
            labels = torch.full((1, seq_multiple, 1), IGNORE_INDEX, dtype=torch.long, device=device)
        with autocast:
            lp = model(ids, labels=labels, per_token=True).cpu()
        if i < len(mine):
            _add_sums(out, lp, [p.spots[r] for r in mine[i]])
        if progress is not None:
            progress(1)
    model.train(was_training)
    if dp_size > 1:
        out = out.to(device)
        dist.all_reduce(out, group=dp_group)  # each item was scored on exactly one data-parallel rank
    return out.tolist()
