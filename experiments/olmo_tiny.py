"""The tiny OLMo-2-style model on the default corpus, on one CPU in a few minutes: prepares the data once
(cached), trains with a progress bar, reports validation loss before and after, writes a checkpoint and an
Aim run, and prints a greedy continuation of a prompt."""

import os
from dataclasses import replace

import torch

from olmo_fn.config import (
    DataConfig,
    EvalConfig,
    OptimizerConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainConfig,
)
from olmo_fn.launch import run_cli
from olmo_fn.model.presets import olmo_tiny

PROMPT = "Return the number of"


def config() -> TrainConfig:
    return TrainConfig(
        run_name="olmo-tiny",
        seed=6198,
        max_duration="250",
        global_train_batch_size=16,
        device_train_microbatch_size=16,
        precision="fp32",
        max_grad_norm=1.0,
        model=olmo_tiny(),
        optimizer=OptimizerConfig(learning_rate=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1),
        scheduler=SchedulerConfig(name="cosine_with_warmup", t_warmup=25, alpha_f=0.1, warmup_min_lr=0.0),
        data=DataConfig(memmap_dtype="uint16", drop_last=True),
        eval=EvalConfig(device_eval_batch_size=16, eval_subset_num_batches=20),
        save_folder="runs/olmo-tiny",
        save_overwrite=True,  # the main job starts afresh each time it is run
        save_interval_unsharded=125,
        save_num_unsharded_checkpoints_to_keep=2,
        eval_interval=125,
        eval_on_load=True,
        console_log_interval=25,
    )


def with_default_corpus(cfg: TrainConfig) -> TrainConfig:
    """Point an unset data/eval/tokenizer config at the default corpus (built on first use, then cached)."""
    if cfg.data.paths or cfg.data.datasets:
        return cfg
    from olmo_fn.data.corpus import default_corpus

    corpus = default_corpus(progress=True)
    return replace(
        cfg,
        data=replace(cfg.data, paths=list(corpus.train_paths), memmap_dtype=corpus.memmap_dtype),
        eval=replace(
            cfg.eval, datasets=cfg.eval.datasets or {"default-corpus-validation": list(corpus.valid_paths)}
        ),
        tokenizer=TokenizerConfig(identifier=cfg.tokenizer.identifier or corpus.tokenizer_json),
    )


def run(cfg: TrainConfig):
    from tokenizers import Tokenizer

    from olmo_fn.generate import generate
    from olmo_fn.train import train

    if not cfg.dry_run:  # a dry run touches no data
        cfg = with_default_corpus(cfg)
    result = train(cfg)
    if result is None or result.stopped_by:  # --dry_run, or stopped by a signal (exit status 75)
        return result
    show = int(os.environ.get("RANK", "0")) == 0  # every rank generates (a sharded model needs them all)
    history = result.eval_history
    if history and show:
        first, last = history[0], history[-1]
        for label in cfg.eval.datasets:
            key = f"{label}/CrossEntropyLoss"
            print(
                f"validation loss ({label}): step {first[0]}: {first[1][key]:.3f} -> step {last[0]}: {last[1][key]:.3f}"
            )
    if show and result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    if cfg.tokenizer.identifier:
        tokenizer = Tokenizer.from_file(cfg.tokenizer.identifier)
        prompt = torch.tensor([tokenizer.encode(PROMPT).ids])
        new = generate(result.model, prompt, max_new_tokens=40).row(0)
        if show:
            print(f"greedy continuation: {PROMPT!r} -> {tokenizer.decode(new)!r}")
    return result


if __name__ == "__main__":
    run_cli(config(), __doc__, run)
