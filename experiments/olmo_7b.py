"""OLMo-7B: the official training settings (2T-token schedule of Dolma v1.5, linear decay, per-block compile).

The official data, its 443 files in order: --data.paths_file=experiments/data/OLMo-7B.txt (or your own
with --data.paths=[...]).
"""

from olmo_fn.config import (
    DataConfig,
    OptimizerConfig,
    OriginalTrainerConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainConfig,
)
from olmo_fn.eval.official import NEOX_PII_TOKENIZER, OLMO1_TASKS, downstream
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo_7b


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-7B",
        seed=6198,
        max_duration="2e12T",
        global_train_batch_size=2048,
        device_train_microbatch_size=2,
        precision="amp_bf16",
        compile=True,
        max_grad_norm=1.0,
        tokenizer=TokenizerConfig(identifier=NEOX_PII_TOKENIZER),
        evaluators=downstream(OLMO1_TASKS),
        model=olmo_7b(),
        optimizer=OptimizerConfig(learning_rate=3e-4, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1),
        scheduler=SchedulerConfig(
            name="linear_with_warmup",
            t_warmup=5000,
            alpha_f=0.1,
            grad_clip_warmup_steps=1000,
            grad_clip_warmup_factor=10,
        ),
        # the original trainer clipped step N with the limit of step N-1 (step 1 with plain max_grad_norm)
        original_trainer=OriginalTrainerConfig(lagged_clip_warmup=True),
        data=DataConfig(memmap_dtype="uint16", drop_last=True, num_workers=16, prefetch_factor=1),
        save_folder="runs/OLMo-7B",
        # official YAML: save_overwrite true; off here so a re-run keeps its checkpoints (--save_overwrite)
        save_interval=1000,
        save_interval_unsharded=None,
        eval_interval=1000,
        console_log_interval=10,
    )


if __name__ == "__main__":
    main(config(), __doc__)
