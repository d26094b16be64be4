"""OLMo 3 7B, long-context extension to 65,536 tokens, with the settings of OLMo-core's official script
src/scripts/official/OLMo3/OLMo-3-1025-7B-long-context.py (allenai/OLMo-core), where every number below is read:

- model: TransformerConfig.olmo3_7B with YaRNRoPEScalingConfig(factor=8, beta_fast=32, beta_slow=1,
  old_context_len=8192) on the full-attention layers; sequence length 65,536;
- data: packed instances with generate_doc_lengths=True (intra-document masking);
- batch: GLOBAL_BATCH_SIZE = 65536 * 64 tokens (64 instances), one instance per rank micro-batch;
- optimizer: SkipStepAdamWConfig(lr=0.00020712352850360292, weight_decay=0.1, betas=(0.9, 0.95)), no weight
  decay on embeddings.weight; schedule LinearWithWarmup(warmup=200 steps, alpha_f=0.0);
- loss: z_loss_multiplier=1e-5, max_grad_norm=1.0; data_loader seed 34521;
- start: the script loads the stage-2 checkpoint https://olmo-checkpoints.org/ai2-llm/Olmo-3-1025-7B/stage2/step47684/
  with its optimizer state and without its trainer state: give that URL as --load_path (it is not the
  default, so that --dry_run works offline); --reset_trainer_state is on.

The script's schedule length is its max_duration of 5e12 tokens; the official run uses context parallelism
over 8 GPUs (TransformerContextParallelConfig.llama3(degree=8)), which olmo_fn does not have: a 65,536-token
instance on one device needs activation checkpointing (see --dry_run's memory). The long-context data
(OLMo_longmino_mix_0625) is not listed here: pass its token files with --data.paths=[...].
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
from olmo_fn.model.presets import olmo3_7b

SEQUENCE_LENGTH = 65_536


def config() -> TrainConfig:
    model = olmo3_7b()
    model.max_sequence_length = SEQUENCE_LENGTH
    model.rope_yarn_factor, model.rope_yarn_original_max_position = 8.0, 8192
    model.rope_yarn_beta_fast, model.rope_yarn_beta_slow = 32.0, 1.0
    return TrainConfig(
        run_name="OLMo-3-1025-7B-long-context",
        seed=34521,
        max_duration="5e12T",
        global_train_batch_size=64,
        device_train_microbatch_size=1,
        precision="amp_bf16",
        compile=True,
        max_grad_norm=1.0,
        softmax_auxiliary_loss=True,
        auxiliary_loss_multiplier=1e-5,
        tokenizer=TokenizerConfig(identifier=DOLMA2_TOKENIZER),
        model=model,
        optimizer=OptimizerConfig(
            learning_rate=0.00020712352850360292,
            betas=(0.9, 0.95),
            eps=1e-8,
            weight_decay=0.1,
            decay_norm_and_bias=True,
            decay_embeddings=False,
            skip_spikes=True,
        ),
        scheduler=SchedulerConfig(name="linear_with_warmup", units="steps", t_warmup=200, alpha_f=0.0),
        data=DataConfig(memmap_dtype="uint32", drop_last=True, generate_doc_lengths=True),
        parallel=ParallelConfig(activation_checkpointing="full"),
        reset_trainer_state=True,
        save_folder="runs/OLMo-3-1025-7B-long-context",
        save_interval=1000,
        save_num_checkpoints_to_keep=0,
        save_interval_unsharded=1000,
        console_log_interval=1,
    )


if __name__ == "__main__":
    main(config(), __doc__)
