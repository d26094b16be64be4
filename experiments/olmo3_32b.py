"""OLMo 3 32B, pretraining, with the settings of OLMo-core's official script
src/scripts/official/OLMo3/OLMo-3-1025-32B-pretrain.py (allenai/OLMo-core), where every number below is read:

- model: TransformerConfig.olmo3_32B (40 query heads over 8 key/value heads, SwiGLU 27648, sliding window
  4096 on three of every four layers), sequence length 8192;
- batch: GLOBAL_BATCH_SIZE = 8 * 1024 * 1024 tokens (1024 instances), rank_microbatch_size = 8192 (one);
- optimizer: SkipStepAdamWConfig(lr=6e-4, weight_decay=0.1, betas=(0.9, 0.95)), no weight decay on
  embeddings.weight; schedule CosWithWarmup(warmup_steps=2000) (alpha_f 0.1 by default) over one epoch;
- data: InstanceFilterConfig(repetition_max_period=13, repetition_min_period=1, repetition_max_count=32);
- loss: z_loss_multiplier=1e-5, max_grad_norm=1.0; data_loader seed 34521; checkpoints and evaluation every
  1000 steps; compile_model=True, bf16 parameters under HSDP (shard degree 64).

The data (Dolma 3, OLMo_mix_0625_official) is not listed here: pass its token files with --data.paths=[...]
or --data.paths_file=FILE (uint32, dolma2 tokenizer).
"""

from olmo_fn.config import (
    DataConfig,
    InstanceFilterConfig,
    OptimizerConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainConfig,
)
from olmo_fn.eval.official import DOLMA2_TOKENIZER
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo3_32b


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-3-1025-32B",
        seed=34521,
        max_duration="1ep",
        global_train_batch_size=1024,
        device_train_microbatch_size=1,
        precision="amp_bf16",
        compile=True,
        max_grad_norm=1.0,
        softmax_auxiliary_loss=True,
        auxiliary_loss_multiplier=1e-5,
        tokenizer=TokenizerConfig(identifier=DOLMA2_TOKENIZER),
        model=olmo3_32b(),
        optimizer=OptimizerConfig(
            learning_rate=6e-4,
            betas=(0.9, 0.95),
            eps=1e-8,
            weight_decay=0.1,
            decay_norm_and_bias=True,
            decay_embeddings=False,
            skip_spikes=True,
        ),
        scheduler=SchedulerConfig(name="cosine_with_warmup", units="steps", t_warmup=2000, alpha_f=0.1),
        data=DataConfig(
            memmap_dtype="uint32",
            drop_last=True,
            instance_filter=InstanceFilterConfig(
                repetition_max_period=13, repetition_min_period=1, repetition_max_count=32
            ),
        ),
        save_folder="runs/OLMo-3-1025-32B",
        save_interval=1000,
        save_num_checkpoints_to_keep=0,
        save_interval_unsharded=1000,
        eval_interval=1000,
        console_log_interval=1,
    )


if __name__ == "__main__":
    main(config(), __doc__)
