"""Greedy generation against transformers' generate on the same weights, through the HF converter."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint
from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.generate import generate, left_pad
from olmo_fn.model import Transformer
from olmo_fn.sampling import SamplingConfig

from .helpers import CASES, config, prompts, random_model

NEW = 24


def _min_margin(model, prompt: list[int], new: list[int]) -> float:
    """Smallest gap between the top two logits at the positions that chose the new tokens."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + new]))[0, len(prompt) - 1 : -1, : model.config.vocab_size]
    top2 = logits.topk(2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_equals_transformers_generate(case, tmp_path):
    cfg = config(case)
    source = random_model(cfg, seed=3)
    write_hf_dir(str(tmp_path), source.state_dict(), cfg)  # the converter's output folder
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert model_config_of_checkpoint(str(tmp_path)).padded_vocab_size == cfg.padded_vocab_size
    ours = Transformer(cfg).eval()  # HF folders keep only the padded vocabulary size; keep the real one
    load_checkpoint(str(tmp_path), ours, None)  # and back, as the generate tool does
    batch = prompts(cfg)
    ids, mask = left_pad(batch, cfg.pad_token_id)
    result = generate(ours, ids, mask, max_new_tokens=NEW)
    suppress = list(range(cfg.vocab_size, cfg.padded_vocab_size))  # padded vocabulary rows, never chosen
    with torch.no_grad():
        hf_out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             suppress_tokens=suppress, pad_token_id=cfg.pad_token_id)  # fmt: skip
    for i, prompt in enumerate(batch):
        row = result.row(i)
        assert row == hf_out[i, ids.shape[1] :].tolist()[: len(row)], (case, i)
        assert _min_margin(ours, prompt, row) > 1e-4  # 100x the logit differences: not decided by rounding
        with torch.no_grad():
            alone = hf.generate(input_ids=torch.tensor([prompt]), max_new_tokens=NEW, do_sample=False,
                                suppress_tokens=suppress, pad_token_id=cfg.pad_token_id)  # fmt: skip
        assert row == alone[0, len(prompt) :].tolist()[: len(row)]
    assert sum(len(result.row(i)) for i in range(len(batch))) > NEW  # not every row stopped at once


def test_greedy_with_repetition_penalty_equals_transformers_and_ignores_padding(tmp_path):
    cfg = config("olmo2-gqa")
    ours = random_model(cfg, seed=6)
    write_hf_dir(str(tmp_path), ours.state_dict(), cfg)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    batch = [[0, 7, 1, 9, 0], [1, 1, 3], [0]]  # ids 0 and 1 (the pad id) inside prompts
    penalty = SamplingConfig(repetition_penalty=1.5)
    ids, mask = left_pad(batch, cfg.pad_token_id)
    together = generate(ours, ids, mask, max_new_tokens=NEW, sampling=penalty)
    suppress = list(range(cfg.vocab_size, cfg.padded_vocab_size))
    for i, prompt in enumerate(batch):
        alone = generate(ours, torch.tensor([prompt]), max_new_tokens=NEW, sampling=penalty).row(0)
        with torch.no_grad():
            one = torch.tensor([prompt])  # explicit mask: transformers would take the pad id 1 for padding
            expected = hf.generate(input_ids=one, attention_mask=torch.ones_like(one), max_new_tokens=NEW, do_sample=False,
                                   repetition_penalty=1.5, suppress_tokens=suppress,
                                   pad_token_id=cfg.pad_token_id)[0, len(prompt) :].tolist()  # fmt: skip
        assert alone == expected[: len(alone)]
        assert together.row(i) == alone
