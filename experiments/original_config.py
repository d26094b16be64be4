r"""Train from an original OLMo TrainConfig YAML as it is, the original's command line with this file in place
of scripts/train.py:

    torchrun --nproc_per_node=8 experiments/original_config.py configs/official/OLMo-1B.yaml \
        --load_path=CHECKPOINT --save_folder=runs/my-1b --run_name=my-1b --save_overwrite

CONFIG.yaml is an official config or a checkpoint's config.yaml, local or a URL. Flags naming a field of the
original's TrainConfig are its dot-list overrides (`--fsdp.sharding_strategy=SHARD_GRAD_OP`); the others are
olmo_fn's (`--parallel.tp=2`, `--tracking.no-aim`); `CONFIG.yaml --help` lists them with the YAML's values.
The run does what the original trainer did: its z-loss multiplier (1e-4 whatever the YAML says) and its clip
warmup lagged by one step (see olmo_fn.config.OriginalTrainerConfig), and it says so in one line.
"""

from olmo_fn.original.run import main

if __name__ == "__main__":
    main()
