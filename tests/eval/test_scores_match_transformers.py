"""Every metric equals brute force: each request read alone by transformers' model on the converted weights,
its logits fed to the original's own metric code (ai2-olmo 0.6's ICLMetric, taken from the installed wheel;
olmo_eval's for f1 and pmi_dc), on the requests olmo_eval's task builder makes (from the first documents of
each file, the ones scored, so that it does not tokenise a whole dataset for a few documents).

mmlu_humanities_var scores one question under each of its 7 prompt variants (5-shot high-school European
history prompts, cut at 2048 tokens); each of its requests, read alone at full length, costs a second here."""

import ast
import contextlib
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.eval.downstream import evaluate_downstream, prepare_task
from tests.eval.helpers import encoder, olmo_eval_reads_first, random_model, tiny_config, tokenizer_path

# label: (documents scored, reference metric code); a document of mmlu_humanities_var is a question under one
# of its 7 prompt variants
CASES = {
    "piqa": (25, "olmo"), "hellaswag": (10, "olmo"), "winogrande": (25, "olmo"), "boolq": (10, "olmo"),
    "sciq": (10, "olmo"), "copa": (25, "olmo"), "arc_easy_ppl": (25, "olmo"), "trivia_qa_wiki_ppl": (25, "olmo"),
    "mmlu_stem_mc_5shot": (5, "olmo"), "mmlu_humanities_var": (7, "olmo"), "csqa_mc_5shot": (8, "olmo"),
    "arc_challenge_rc_5shot_bpb": (8, "olmo"), "mrpc": (40, "olmo_eval"), "arc_easy:pmi_dc": (20, "olmo_eval"),
}  # fmt: skip


def original_icl_metric():
    """ai2-olmo 0.6's ICLMetric class, compiled from olmo/eval/downstream.py of the installed wheel (importing
    the module itself would pull in the wheel's pinned dependencies)."""
    folder = importlib.util.find_spec("olmo").submodule_search_locations[0]
    tree = ast.parse((Path(folder) / "eval" / "downstream.py").read_text())
    keep = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ICLMetric"]
    keep += [n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "LOG_2_OF_E"]
    namespace = {}
    header = "from typing import Any, Dict, List, Optional\nimport torch\nimport torch.nn.functional as F\n"
    exec(header + "from torchmetrics import Metric\n" + ast.unparse(ast.Module(keep, [])), namespace)
    return namespace["ICLMetric"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cfg = tiny_config()
    ours = random_model(cfg, seed=4)
    folder = tmp_path_factory.mktemp("hf")
    write_hf_dir(str(folder), ours.state_dict(), cfg)
    return ours, AutoModelForCausalLM.from_pretrained(str(folder)).eval()


def _first_docs(samples, n):
    docs = list(dict.fromkeys(s["doc_id"] for s in samples))[:n]
    return [s for s in samples if s["doc_id"] in set(docs)]


@contextlib.contextmanager
def _first_rows_read(n: int):
    """olmo_eval reading the first n documents of each file (dev splits, the few-shot examples, whole): its
    first n documents are the same as when it reads every one, without tokenising the rest."""

    def first_documents(requests):
        keep = set(list(dict.fromkeys(r["doc_id"] for r in requests if r["doc_id"] < 1_000_000))[:n])
        return [r for r in requests if r["doc_id"] in keep]

    with pytest.MonkeyPatch.context() as patch:
        olmo_eval_reads_first(patch, n, first_documents)
        yield


@torch.no_grad()
def reference(label: str, metric: str | None, n_docs: int, code: str, hf) -> float:
    from olmo_eval import HFTokenizer, build_task

    with _first_rows_read(n_docs):
        task = build_task(label, HFTokenizer(tokenizer_path(), pad_token_id=1, eos_token_id=50279))
    if metric is not None:
        task.metric_type = metric
    metric_type = metric or task.metric_type
    if code == "olmo":
        icl = original_icl_metric()(metric_type=metric_type)
    else:
        from olmo_eval.metrics import ICLMetric

        icl = ICLMetric(metric_type=metric_type)
    for sample in _first_docs(task.samples, n_docs):
        batch = task.collate_fn([sample])  # one request alone
        if code == "olmo":  # ai2-olmo 0.6 divides by the length without the leading space
            batch["cont_str_len"] = torch.tensor([sample["cont_str_len_no_leading_space"]])
            batch["cont_byte_len"] = torch.tensor([sample["cont_byte_len_no_leading_space"]])
        logits = hf(torch.tensor([sample["query"]])).logits
        dc = hf(torch.tensor([sample["dc_query"]])).logits if metric_type == "pmi_dc" else None
        icl.update(batch, logits, dc) if dc is not None else icl.update(batch, logits)
    value = icl.compute()
    if isinstance(value, dict):  # olmo_eval: {"f1_v1": ..., "f1_v2": ...}, _v1 without the leading space
        value = value[f"{metric_type}_v1"]
    return float(value)


@pytest.mark.parametrize("spec", sorted(CASES))
def test_metric_equals_brute_force_transformers_scoring(spec, models):
    ours, hf = models
    label, _, metric = spec.partition(":")
    n_docs, code = CASES[spec]
    task = prepare_task(label, encoder(), metric=metric or None, limit=n_docs)
    got = evaluate_downstream(ours, [task], batch_size=8, pad_token_id=1)[label]
    assert list(got) == [task.metric]
    want = reference(label, metric or None, n_docs, code, hf)
    assert math.isclose(got[task.metric], want, rel_tol=1e-6, abs_tol=1e-6), (got, want)


def test_the_scores_are_not_all_alike(models):
    """The comparison above can fail: the random model prefers different choices on different questions."""
    ours, _ = models
    task = prepare_task("piqa", encoder(), metric="acc", limit=25)
    value = evaluate_downstream(ours, [task], batch_size=8, pad_token_id=1)["piqa"]["acc"]
    assert 0.1 < value < 0.9
