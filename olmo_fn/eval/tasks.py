"""The original OLMo's downstream tasks: each document as prompt text, then as token requests.

A task turns each document of its packaged data into an `Example` (context(s), continuations, gold index,
domain-conditional prompt) with the original's prompt text, and `build_requests` turns examples into the
original's samples: one `Request` per (document, continuation), the context left-truncated so that context
plus continuation (less its last token) fits `model_ctx_len` tokens (2048, the original evaluator's default,
whatever the model's own length). Labels and defaults follow ai2-olmo 0.6 (`olmo/eval/downstream.py`); its
quirks are kept where they change what is scored, and named where they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from olmo_fn.eval.task_data import hf_split

MODEL_CTX_LEN = 2048
"""The original evaluator's context length (ICLMultiChoiceTaskDataset's model_ctx_len default)."""


class Example(NamedTuple):
    """One document under one prompt: every continuation is scored after its context. Winogrande has one
    context per choice and a single shared continuation (`contexts` has several entries, `continuations` one)."""

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    label: int
    domain_conditionals: tuple[str, ...]


@dataclass(frozen=True)
class Request:
    """One scored continuation, as the original's sample: the model reads `query`, and the logits at
    positions ctx_len - 1 ... ctx_len + len(continuation) - 2 score the continuation's tokens."""

    doc_id: int
    cont_id: int
    label_id: int
    query: tuple[int, ...]
    ctx_len: int
    continuation: tuple[int, ...]
    dc_query: tuple[int, ...]
    dc_len: int
    cont_str_len: int
    """Characters of the continuation without its leading space (len - 1), the original's len_norm divisor."""
    cont_byte_len: int
    """UTF-8 bytes of the continuation without its first character, the original's bpb divisor."""


@dataclass(frozen=True)
class TaskDef:
    """A task: its label, its metric and how to read its examples (or its ready requests)."""

    label: str
    metric: str
    examples: Callable[[], Iterable[Example]] | None = None
    oe_requests: Callable[[], list[dict[str, Any]]] | None = None
    """oe_eval tasks: precomputed (context, continuation) requests, taken verbatim."""


def encode_all(
    encode_batch: Callable[[list[str]], list[list[int]]], texts: Iterable[str]
) -> dict[str, tuple]:
    """Each distinct text's token ids (encoded once, in one batch)."""
    unique = list(dict.fromkeys(texts))
    return dict(zip(unique, (tuple(ids) for ids in encode_batch(unique)), strict=True))


def _request(
    doc_id, cont_id, label_id, ctx, cont, dc, cont_str: str, n_ctx: int, winogrande: bool
) -> Request:
    query = (ctx + cont[:-1])[-n_ctx:]
    # the original's winogrande keeps len(ctx) even when the query was truncated
    ctx_len = len(ctx) if winogrande else len(query) - len(cont) + 1
    return Request(
        doc_id, cont_id, label_id, query, ctx_len, cont, dc + cont[:-1], len(dc),
        len(cont_str) - 1, len(cont_str[1:].encode("utf-8")),
    )  # fmt: skip


def build_requests(
    examples: Sequence[Example], encode_batch, model_ctx_len: int = MODEL_CTX_LEN
) -> list[Request]:
    """The original's samples of `examples`, document by document, continuations in order."""
    ids = encode_all(
        encode_batch,
        (t for ex in examples for t in (*ex.contexts, *ex.continuations, *ex.domain_conditionals)),
    )
    out = []
    for doc_id, ex in enumerate(examples):
        if len(ex.contexts) > 1:  # winogrande: one context per choice, one continuation
            cont_str = ex.continuations[0]
            for cont_id, (ctx, dc) in enumerate(zip(ex.contexts, ex.domain_conditionals, strict=True)):
                out.append(
                    _request(doc_id, cont_id, ex.label, ids[ctx], ids[cont_str], ids[dc], cont_str, model_ctx_len, True)
                )  # fmt: skip
            continue
        ctx, dc = ids[ex.contexts[0]], ids[ex.domain_conditionals[0]]
        for cont_id, cont_str in enumerate(ex.continuations):
            out.append(
                _request(doc_id, cont_id, ex.label, ctx, ids[cont_str], dc, cont_str, model_ctx_len, False)
            )
    return out


def build_oe_requests(
    raw: Sequence[dict[str, Any]], metric: str, encode_batch, model_ctx_len: int = MODEL_CTX_LEN
) -> list[Request]:
    """Requests of an oe_eval task: context and continuation verbatim, `idx` the choice, `label` the gold one;
    the unconditional requests (doc_id >= 1,000,000) are skipped and ce_loss/bpb keep the gold continuation
    only, as the original does. The domain-conditional prompt is the original's default, a space."""
    kept = []
    for r in raw:
        if r["doc_id"] >= 1_000_000:
            continue
        cont_id, label = r["idx"], r["label"]
        if metric in ("ce_loss", "bpb"):
            if cont_id != label:
                continue
            cont_id = label = 0
        kept.append((r["doc_id"], cont_id, label, r["request"]["context"], r["request"]["continuation"]))
    ids = encode_all(encode_batch, (" ", *(t for k in kept for t in k[3:])))
    dc = ids[" "]
    return [
        _request(doc_id, cont_id, label, ids[ctx], ids[cont], dc, cont, model_ctx_len, False)
        for doc_id, cont_id, label, ctx, cont in kept
    ]


# ---------------------------------------------------------------------------------------------- prompts


def _mc(context: str, continuations: Iterable[str], label: int, dc: str) -> Example:
    return Example((context,), tuple(continuations), label, (dc,))


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def _detokenize(text: str) -> str:
    """MRPC / SST-2: undo the tokenised spacing of the GLUE text, as the original does."""
    for a, b in ((" n't", "n't"), (" )", ")"), ("( ", "("), ('" ', '"'), (' "', '"')):
        text = text.replace(a, b)
    return re.sub(r" (['.,])", r"\1", text)


def _arc_label(doc) -> int:
    key = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}.get(doc["answerKey"], doc["answerKey"])
    return "ABCDE".index(key)


def piqa(d):
    return _mc(
        "Question: " + d["goal"] + "\nAnswer:", (" " + d["sol1"], " " + d["sol2"]), d["label"], "Answer:"
    )


def hellaswag(d):
    dc = _hellaswag_clean(d["ctx_b"].capitalize()) or _hellaswag_clean(d["ctx_a"]).split(" ")[-1]
    context = _hellaswag_clean(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize())
    return _mc(context, (" " + _hellaswag_clean(e) for e in d["endings"]), int(d["label"]), dc)


def winogrande(d):
    i = d["sentence"].index("_")
    options = (d["option1"], d["option2"])
    contexts = tuple(d["sentence"][:i] + o for o in options)
    return Example(contexts, (" " + d["sentence"][i + 1 :].strip(),), int(d["answer"]) - 1, options)


def openbook_qa(d):
    dc = d["question_stem"].strip().split(" ")[-1]
    label = "ABCD".index(d["answerKey"].strip())
    return _mc(d["question_stem"], (" " + c for c in d["choices"]["text"]), label, dc)


def boolq(d):
    context = d["passage"] + "\nQuestion: " + d["question"] + "?\nAnswer:"
    return _mc(context, (" yes", " no"), 0 if d["answer"] else 1, "Answer:")


def sciq(d):
    context = d["support"].strip() + "\nQuestion: " + d["question"] + "\nAnswer:"
    choices = (d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"])
    return _mc(context, (" " + c for c in choices), 3, "Answer:")


def arc(d):
    return _mc("Question: " + d["question"] + "\nAnswer:", (" " + c for c in d["choices"]["text"]), _arc_label(d), "Answer:")  # fmt: skip


def arc_easy_ppl(d):
    """ce_loss of one continuation. As in the original (ArcEasyCELoss), whose label override returns 0 also
    where it picks the answer, that continuation is the first choice, which is not always the correct one."""
    return _mc("Question: " + d["question"] + "\nAnswer:", (" " + d["choices"]["text"][0],), 0, "Answer:")


def copa(d):
    connector = "because" if d["question"] == "cause" else "therefore"
    lower = lambda c: c[0].lower() + c[1:]  # noqa: E731
    context = d["premise"].strip()[:-1] + " " + connector
    return _mc(context, (" " + lower(d["choice1"]), " " + lower(d["choice2"])), d["label"], connector)


def rte(d):
    context = d["sentence1"] + "\nQuestion: " + d["sentence2"] + " True or False?\nAnswer:"
    return _mc(context, (" True", " False"), d["label"], "Answer:")


def commitment_bank(d):
    context = d["premise"] + "\nQuestion: " + d["hypothesis"] + ". True, False or Neither?\nAnswer:"
    return _mc(context, (" True", " False", " Neither"), d["label"], "Answer:")


def mrpc(d):
    context = (
        "Sentence 1: " + _detokenize(d["sentence1"]) + "\nSentence 2: " + _detokenize(d["sentence2"])
        + "\nQuestion: Do both sentences mean the same thing?\nAnswer:"
    )  # fmt: skip
    return _mc(context, (" yes", " no"), 0 if d["label"] else 1, "Answer:")


def sst2(d):
    context = _detokenize(d["sentence"]) + "\nQuestion: Is this sentence positive or negative?\nAnswer:"
    return _mc(context, (" negative", " positive"), d["label"], "Answer:")


def social_iqa(d):
    context = "Question: " + d["context"] + " " + d["question"] + "\nAnswer:"
    answers = (d["answerA"], d["answerB"], d["answerC"])
    return _mc(context, (" " + a for a in answers), int(d["label"]) - 1, "Answer:")


def trivia_qa(d):
    return _mc("\nQuestion: " + d["question"] + "\nAnswer:", (" " + d["answer"]["value"],), 0, "Answer:")


def natural_qs(d):
    return _mc("\nQuestion: " + d["question"] + "\nAnswer:", (" " + d["answer"][0],), 0, "Answer:")


# label: (prompt, hf dataset path, name, split, metric)
HF_TASKS: dict[str, tuple[Callable[[dict], Example], str, str | None, str, str]] = {
    "piqa": (piqa, "piqa", "plain_text", "validation", "len_norm"),
    "hellaswag": (hellaswag, "hellaswag", None, "validation", "len_norm"),
    "winogrande": (winogrande, "winogrande", "winogrande_xl", "validation", "acc"),
    "openbook_qa": (openbook_qa, "openbookqa", "main", "validation", "len_norm"),
    "boolq": (boolq, "boolq", None, "validation", "acc"),
    "sciq": (sciq, "sciq", None, "validation", "acc"),
    "arc_easy": (arc, "ai2_arc", "ARC-Easy", "validation", "acc"),
    "arc_easy_ppl": (arc_easy_ppl, "ai2_arc", "ARC-Easy", "validation", "ce_loss"),
    "arc_challenge": (arc, "ai2_arc", "ARC-Challenge", "validation", "len_norm"),
    "basic_arithmetic": (arc, "allenai/basic_arithmetic", None, "validation", "acc"),
    "copa": (copa, "super_glue", "copa", "validation", "acc"),
    "rte": (rte, "glue", "rte", "validation", "len_norm"),
    "commitment_bank": (commitment_bank, "super_glue", "cb", "validation", "acc"),
    "mrpc": (mrpc, "glue", "mrpc", "validation", "f1"),
    "sst2": (sst2, "glue", "sst2", "validation", "acc"),
    "commonsense_qa": (arc, "tau/commonsense_qa", None, "validation", "len_norm"),
    "social_iqa": (social_iqa, "social_i_qa", None, "validation", "len_norm"),
    "trivia_qa_wiki_ppl": (trivia_qa, "trivia_qa", "rc.wikipedia.nocontext", "validation", "ce_loss"),
    "natural_qs_open_ppl": (natural_qs, "nq_open", None, "validation", "ce_loss"),
}


def hf_task(label: str) -> TaskDef:
    prompt, path, name, split, metric = HF_TASKS[label]
    return TaskDef(label, metric, examples=lambda: [prompt(dict(d)) for d in hf_split(path, name, split)])
