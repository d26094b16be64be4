"""OLMo-2 7B, stage 1: one epoch of OLMo-mix-1124 (4T-token budget, cosine to 5e12 tokens), z-loss,
repeated n-gram instance filter, uint32 token files of the dolma2 tokenizer.

The official data, its 1122 files in order: --data.paths_file=experiments/data/OLMo-2-stage1.txt (also
OLMo-2 1B's and 13B's; or your own with --data.paths=[...]).
"""

from olmo_fn.config import (
    DataConfig,
    InstanceFilterConfig,
    OptimizerConfig,
    OriginalTrainerConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainConfig,
)
from olmo_fn.eval.official import DOLMA2_TOKENIZER, OLMO2_TASKS, downstream
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo2_7b


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-2-7B",
        seed=6198,
        max_duration="1ep",
        global_train_batch_size=1024,
        device_train_microbatch_size=2,
        precision="amp_bf16",
        max_grad_norm=1.0,
        softmax_auxiliary_loss=True,
        auxiliary_loss_multiplier=1e-5,  # as the YAML says, but the original trainer never passed it on:
        # its loss used its built-in 1e-4, so the official runs had z-loss 1e-4
        original_trainer=OriginalTrainerConfig(builtin_z_loss_multiplier=True),
        tokenizer=TokenizerConfig(identifier=DOLMA2_TOKENIZER),
        evaluators=downstream(OLMO2_TASKS),
        model=olmo2_7b(),
        optimizer=OptimizerConfig(
            learning_rate=3e-4,
            betas=(0.9, 0.95),
            eps=1e-8,
            weight_decay=0.1,
            decay_norm_and_bias=True,
            decay_embeddings=False,
            # As OLMo-core's OLMo2-1B.py and OLMo2-7B.py train OLMo 2 (SkipStepAdamW, window 128, 6 sigma;
            # its OLMo2-13B.py does not): a step whose loss or grad norm spikes is skipped. The original
            # trainer of the official runs could not skip; --optimizer.no-skip-spikes trains as it did.
            skip_spikes=True,
        ),
        scheduler=SchedulerConfig(
            name="cosine_with_warmup",
            units="tokens",
            t_warmup=8_388_608_000,
            t_max=5e12,
            alpha_f=0.1,
            warmup_min_lr=0.0,
        ),
        data=DataConfig(
            memmap_dtype="uint32",
            drop_last=True,
            num_workers=32,
            prefetch_factor=8,
            instance_filter=InstanceFilterConfig(),
        ),
        save_folder="runs/OLMo-2-7B",
        save_interval=1000,
        save_num_checkpoints_to_keep=0,
        save_interval_unsharded=1000,
        eval_interval=1000,
        console_log_interval=1,
    )


if __name__ == "__main__":
    main(config(), __doc__)
