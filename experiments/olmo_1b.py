"""OLMo-1B: the official training settings (3T tokens of Dolma v1.5, 739,328 steps of 4M tokens).

The official data, its 249 files in order: --data.paths_file=experiments/data/OLMo-1B.txt (or your own
with --data.paths=[...]).
"""

from olmo_fn.config import DataConfig, OptimizerConfig, SchedulerConfig, TokenizerConfig, TrainConfig
from olmo_fn.eval.official import NEOX_PII_TOKENIZER, OLMO1_TASKS, downstream
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo_1b


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-1B",
        seed=6198,
        max_duration="739328",
        global_train_batch_size=2048,
        device_train_microbatch_size=8,
        precision="amp_bf16",
        max_grad_norm=1.0,
        tokenizer=TokenizerConfig(identifier=NEOX_PII_TOKENIZER),
        evaluators=downstream(OLMO1_TASKS),
        model=olmo_1b(),
        optimizer=OptimizerConfig(learning_rate=4e-4, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1),
        scheduler=SchedulerConfig(name="cosine_with_warmup", t_warmup=2000, alpha_f=0.1),
        data=DataConfig(memmap_dtype="uint16", drop_last=True, num_workers=0),
        save_folder="runs/OLMo-1B",
        save_interval=1000,
        save_num_checkpoints_to_keep=9,
        save_interval_unsharded=10000,
        eval_interval=1000,
        console_log_interval=10,
    )


if __name__ == "__main__":
    main(config(), __doc__)
