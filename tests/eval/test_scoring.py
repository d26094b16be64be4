"""The scoring plan reads a shared context once and still gives each continuation the score it has alone."""

import torch

from olmo_fn.eval.scoring import plan, score
from tests.eval.helpers import random_model, tiny_config


def test_a_shared_context_is_read_once_and_scores_as_alone():
    ctx = (5, 6, 7, 8, 9)
    request = lambda context, cont: (context + cont[:-1], len(context) - 1, cont)  # noqa: E731
    items = [
        request(ctx, (10, 11, 12)),  # one question, multi-token continuations
        request(ctx, (20, 21, 22)),
        request(ctx, (10, 11)),  # its tail (10,) is a prefix of the first one's (10, 11)
        request(ctx, (30,)),  # single-token choices share the context's row entirely
        request(ctx, (31,)),
        request((1, 2, 3), (3, 4)),  # another question
    ]
    p = plan(items, batch_size=8)
    assert len(p.rows) == 2 and p.rows[0] == ctx + (10, 11, 20, 21)  # the context once, then the two tails
    assert p.positions[0] == [0, 1, 2, 3, 4, 5, 6, 5, 6] and p.segments[0] == [0, 0, 0, 0, 0, 1, 1, 2, 2]
    model = random_model(tiny_config(), seed=2)
    together = score(model, items, batch_size=8, pad_token_id=1)
    alone = [score(model, [item], batch_size=1, pad_token_id=1)[0] for item in items]
    torch.testing.assert_close(torch.tensor(together), torch.tensor(alone), rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # and the score alone is the plain sum of log-softmax over the padded vocabulary
        lp = model(torch.tensor([items[0][0]]))[0].log_softmax(-1)
    direct = sum(float(lp[4 + j, t]) for j, t in enumerate(items[0][2]))  # first scored at ctx's last
    assert abs(alone[0] - direct) < 1e-5


def test_padding_to_the_tp_degree_changes_nothing():
    """Under TP, batches are right-padded to a multiple of the degree: the scores stay the same."""
    items = [((4, 5, 6, 7), 2, (7, 8)), ((9, 10), 0, (10, 11))]
    model = random_model(tiny_config(), seed=3)
    plain = score(model, items, batch_size=1, pad_token_id=1)
    padded = score(model, items, batch_size=1, pad_token_id=1, seq_multiple=4)
    torch.testing.assert_close(torch.tensor(padded), torch.tensor(plain), rtol=1e-6, atol=1e-6)
