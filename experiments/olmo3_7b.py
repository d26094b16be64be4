"""OLMo 3 7B, pretraining stage 1, with the settings of OLMo-core's official script
src/scripts/official/OLMo3/OLMo-3-1025-7B-pretrain-1.py (allenai/OLMo-core), where every number below is read:

- model: TransformerConfig.olmo3_7B (sliding window 4096 on three of every four layers, context 8192);
- batch: GLOBAL_BATCH_SIZE = 8192 * 512 tokens (512 instances of DEFAULT_SEQUENCE_LENGTH = 8192),
  rank_microbatch_size = 2 * 8192 tokens (2 instances);
- optimizer: SkipStepAdamWConfig(lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95)), no weight decay on
  embeddings.weight only; skipped spike steps (SkipStepAdamW);
- schedule: CosWithWarmup(warmup_steps=2000) (alpha_f 0.1 by its default) over max_duration 5e12 tokens;
- loss: z_loss_multiplier=1e-5, max_grad_norm=1.0; data_loader seed 34521; checkpoints every 1000 steps,
  evaluation every 10,000; compile_model=True, bf16 parameters under HSDP.

The data (Dolma 3, OLMo_mix_0625_official) is not listed here: pass its token files with --data.paths=[...]
or --data.paths_file=FILE (uint32, dolma2 tokenizer).
"""

from olmo_fn.config import DataConfig, OptimizerConfig, SchedulerConfig, TokenizerConfig, TrainConfig
from olmo_fn.eval.official import DOLMA2_TOKENIZER
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo3_7b

TOKENS_PER_BATCH = 512 * 8192


def config() -> TrainConfig:
    return TrainConfig(
        run_name="OLMo-3-1025-7B",
        seed=34521,
        max_duration="5e12T",
        global_train_batch_size=512,
        device_train_microbatch_size=2,
        precision="amp_bf16",
        compile=True,
        max_grad_norm=1.0,
        softmax_auxiliary_loss=True,
        auxiliary_loss_multiplier=1e-5,
        tokenizer=TokenizerConfig(identifier=DOLMA2_TOKENIZER),
        model=olmo3_7b(),
        optimizer=OptimizerConfig(
            learning_rate=3e-4,
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
            t_max=5e12,
            alpha_f=0.1,
            warmup_min_lr=0.0,
        ),
        data=DataConfig(memmap_dtype="uint32", drop_last=True),
        save_folder="runs/OLMo-3-1025-7B",
        save_interval=1000,
        save_num_checkpoints_to_keep=0,
        save_interval_unsharded=1000,
        eval_interval=10_000,
        console_log_interval=1,
    )


if __name__ == "__main__":
    main(config(), __doc__)
