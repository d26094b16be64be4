"""OLMo 2 32B (0325), pretraining, with the settings of OLMo-core's official script
src/scripts/official/OLMo2/OLMo-2-0325-32B-train.py (allenai/OLMo-core), where every number below is read:

- model: TransformerConfig.olmo2_32B (40 query heads over 8 key/value heads, SwiGLU 27648), sequence 4096;
- batch: global_batch_size = 2048 * 4096 tokens (2048 instances), rank_microbatch_size = 4 * 4096 (four);
- optimizer: SkipStepAdamWConfig(lr=6e-4, weight_decay=0.1, betas=(0.9, 0.95)), no weight decay on
  embeddings.weight; schedule CosWithWarmup(warmup_steps=2000) (alpha_f 0.1 by default) over
  max_duration 6.5e12 tokens;
- loss: z_loss_multiplier=1e-5, max_grad_norm=1.0; data_loader seed 34521; full activation checkpointing;
  checkpoints and evaluation every 1000 steps; compile_model=True, bf16 parameters under HSDP.

The data (OLMoE_mix_0824) is not listed here: pass its token files with --data.paths=[...] or
--data.paths_file=FILE (uint32, dolma2 tokenizer).
"""

from olmo_fn.config import (
    DataConfig,
    OptimizerConfig,
    ParallelConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainConfig,
)
from olmo_fn.eval.official import DOLMA2_TOKENIZER
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo2_32b

TOKENS_PER_BATCH = 2048 * 4096


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-2-0325-32B",
        seed=34521,
        max_duration="6.5e12T",
        global_train_batch_size=2048,
        device_train_microbatch_size=4,
        precision="amp_bf16",
        compile=True,
        max_grad_norm=1.0,
        softmax_auxiliary_loss=True,
        auxiliary_loss_multiplier=1e-5,
        tokenizer=TokenizerConfig(identifier=DOLMA2_TOKENIZER),
        model=olmo2_32b(),
        optimizer=OptimizerConfig(
            learning_rate=6e-4,
            betas=(0.9, 0.95),
            eps=1e-8,
            weight_decay=0.1,
            decay_norm_and_bias=True,
            decay_embeddings=False,
            skip_spikes=True,
        ),
        scheduler=SchedulerConfig(
            name="cosine_with_warmup",
            units="tokens",
            t_warmup=2000 * TOKENS_PER_BATCH,
            t_max=6.5e12,
            alpha_f=0.1,
            warmup_min_lr=0.0,
        ),
        data=DataConfig(memmap_dtype="uint32", drop_last=True),
        parallel=ParallelConfig(activation_checkpointing="full"),
        save_folder="runs/OLMo-2-0325-32B",
        save_interval=1000,
        save_num_checkpoints_to_keep=0,
        save_interval_unsharded=1000,
        eval_interval=1000,
        console_log_interval=1,
    )


if __name__ == "__main__":
    main(config(), __doc__)
