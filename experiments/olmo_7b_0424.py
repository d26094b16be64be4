"""OLMo-7B-0424 (OLMo 1.7): 2 epochs of Dolma 1.7, token-based cosine schedule, clip_qkv 8, context 4096.

The official data, its 1033 Dolma 1.7 files in order: --data.paths_file=experiments/data/OLMo-7B-0424-0724.txt
(or your own with --data.paths=[...]).
"""

from olmo_fn.config import (
    DataConfig,
    OptimizerConfig,
    OriginalTrainerConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainConfig,
)
from olmo_fn.eval.official import DOLMA_V1_5_TOKENIZER, OLMO_0424_TASKS, downstream
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo_7b_0424


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-7B-0424",  # the official YAML's run_name is OLMo-1.7-7B (0724 has the same YAML)
        seed=6198,
        max_duration="2ep",
        global_train_batch_size=1024,
        device_train_microbatch_size=2,
        precision="amp_bf16",
        max_grad_norm=1.0,
        tokenizer=TokenizerConfig(identifier=DOLMA_V1_5_TOKENIZER),
        evaluators=downstream(OLMO_0424_TASKS),
        model=olmo_7b_0424(),
        optimizer=OptimizerConfig(
            learning_rate=3e-4,
            betas=(0.9, 0.95),
            eps=1e-5,
            weight_decay=0.1,
            decay_norm_and_bias=True,
            decay_embeddings=True,
        ),
        scheduler=SchedulerConfig(
            name="cosine_with_warmup",
            units="tokens",
            t_warmup=10_485_760_000,
            t_max=3e12,
            alpha_f=0.1,
            grad_clip_warmup_steps=2_097_152_000,
            grad_clip_warmup_factor=5,
        ),
        # the original trainer clipped step N with the limit of step N-1 (step 1 with plain max_grad_norm)
        original_trainer=OriginalTrainerConfig(lagged_clip_warmup=True),
        data=DataConfig(memmap_dtype="uint16", drop_last=True, num_workers=32, prefetch_factor=8),
        save_folder="runs/OLMo-7B-0424",
        # official YAML: save_overwrite true; off here so a re-run keeps its checkpoints (--save_overwrite)
        save_interval=1000,
        save_interval_unsharded=None,
        eval_interval=1000,
        console_log_interval=10,
    )


if __name__ == "__main__":
    main(config(), __doc__)
