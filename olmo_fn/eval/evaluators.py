"""A run's evaluators, built from its TrainConfig: the lm sets (eval.datasets and lm evaluators) and the
downstream tasks (tokenised once, before the first step), and the tokenizer those need."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from olmo_fn.config import TrainConfig
from olmo_fn.errors import ConfigError, OlmoFnError
from olmo_fn.eval.downstream import PreparedTask, prepare_task
from olmo_fn.eval.task_data import INSTALL, packaged_tokenizer

Encoder = Callable[[list[str]], list[list[int]]]


@dataclass
class DownstreamEval:
    """A downstream evaluator of a run: its task's requests and how it is batched."""

    task: PreparedTask
    batch_size: int
    subset_num_batches: int | None = None

    def subset(self, dp_size: int) -> PreparedTask:
        """The requests the original would score: all (subset_num_batches None or <= 0), or the first
        subset_num_batches batches of each rank's share (the first n x batch x ranks requests)."""
        if self.subset_num_batches is None or self.subset_num_batches <= 0:
            return self.task
        n = self.subset_num_batches * self.batch_size * dp_size
        return PreparedTask(self.task.label, self.task.metric, self.task.requests[:n])


def lm_eval_paths(cfg: TrainConfig) -> dict[str, list[str]]:
    """label -> token files of every perplexity set: eval.datasets, then the lm evaluators."""
    out = {label: list(paths) for label, paths in cfg.eval.datasets.items()}
    for ev in cfg.evaluators:
        if ev.type != "lm":
            continue
        if ev.datasets:
            out.update({label: list(paths) for label, paths in ev.datasets.items()})
        elif ev.paths:
            out[ev.label] = list(ev.paths)
        else:
            raise ConfigError(
                f"evaluators: lm evaluator {ev.label} has no paths or datasets; give its token files"
            )
    return out


def read_tokenizer(identifier: str, what: str = "tokenizer.identifier"):
    """A tokenizers.Tokenizer from a JSON file (a path or URL, or a name packaged with the task data such as
    `tokenizers/allenai_dolma2.json`); a ConfigError naming `what` when it cannot be read."""
    from tokenizers import Tokenizer

    from olmo_fn.checkpoint import storage

    path = packaged_tokenizer(identifier)
    if path is None or ("://" not in path and not os.path.isfile(path)):
        raise ConfigError(
            f"{what}: {identifier} is neither a file nor packaged in the installed task data ({INSTALL})"
        )
    try:
        return Tokenizer.from_str(storage.read_bytes(path).decode())
    except Exception as e:  # missing URL, bad JSON: tokenizers raises its own Exception type
        raise ConfigError(f"{what}: cannot read {identifier} as a tokenizers JSON file ({e})") from e


def tokenizer_encoder(identifier: str | None, vocab_size: int, what: str = "tokenizer.identifier") -> Encoder:
    """encode_batch of a tokenizer (see read_tokenizer), checked to fit a model of `vocab_size` tokens."""
    if not identifier:
        raise ConfigError(f"{what}: downstream tasks need a tokenizer; give a tokenizers JSON file")
    tok = read_tokenizer(identifier, what)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise ConfigError(
            f"{what}: {identifier} has {size} tokens, more than the model's vocab_size {vocab_size}; "
            "use the tokenizer the model was trained with"
        )
    return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def build_downstream(cfg: TrainConfig) -> list[DownstreamEval]:
    """The run's downstream evaluators, their requests built (a bad label, missing data or tokenizer is a
    ConfigError naming it)."""
    wanted = [ev for ev in cfg.evaluators if ev.type == "downstream"]
    if not wanted:
        return []
    encode = tokenizer_encoder(cfg.tokenizer.identifier, cfg.model.vocab_size)
    out = []
    for ev in wanted:
        try:
            task = prepare_task(ev.label, encode, metric=ev.metric)
        except OlmoFnError as e:
            raise ConfigError(f"evaluators: {str(e).splitlines()[0]}") from e
        batch = ev.device_eval_batch_size or cfg.eval.device_eval_batch_size
        subset = (
            ev.subset_num_batches if ev.subset_num_batches is not None else cfg.eval.eval_subset_num_batches
        )
        out.append(DownstreamEval(task, batch, subset))
    return out


def run_downstream(
    model, evals: list[DownstreamEval], env, autocast_dtype=None, progress=None
) -> dict[str, dict[str, float]]:
    """Score a run's downstream evaluators on every rank of `env` (a DistEnv); tasks of one batch size share
    their forward passes. task label -> {metric: value}, the same on every rank."""
    from olmo_fn.eval.downstream import evaluate_downstream

    out: dict[str, dict[str, float]] = {}
    for batch_size in dict.fromkeys(ev.batch_size for ev in evals):
        tasks = [ev.subset(env.dp_size) for ev in evals if ev.batch_size == batch_size]
        out.update(
            evaluate_downstream(
                model,
                tasks,
                batch_size=batch_size,
                pad_token_id=model.config.pad_token_id,
                dp_rank=env.dp_rank,
                dp_size=env.dp_size,
                dp_group=env.dp_group,
                autocast_dtype=autocast_dtype,
                progress=progress,
            )  # fmt: skip
        )
    return {ev.task.label: out[ev.task.label] for ev in evals}
