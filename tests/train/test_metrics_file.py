"""{save_folder}/metrics.jsonl: one line per logged step, the original's keys, each step once across a resume."""

import json
import math
import shutil
from pathlib import Path

from olmo_fn.train import train


def _rows(folder: str) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def test_one_line_per_step_with_the_original_keys_and_normalisation(make_config):
    cfg = make_config(max_duration="4", softmax_auxiliary_loss=True)
    train(cfg)
    rows = _rows(cfg.save_folder)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        # the original divides sums by every position (B x T); each row's last position has no target
        per_label = row["train/CrossEntropyLoss.per_label_token"]
        seq = cfg.model.max_sequence_length
        assert math.isclose(row["train/CrossEntropyLoss"], per_label * (seq - 1) / seq, rel_tol=1e-6)
        assert row["train/Perplexity"] == math.exp(row["train/CrossEntropyLoss"])
        assert row["train/ZLoss"] > 0 and row["optim/total_grad_norm"] > 0
        assert row["throughput/total_tokens"] == row["step"] * cfg.global_train_batch_size * seq
        assert {"optim/learning_rate_group0", "throughput/device/tokens_per_second"} <= set(row)
    assert "eval/valid/CrossEntropyLoss" in rows[3] and "eval/valid/Perplexity" in rows[3]


def test_a_resumed_run_drops_the_lines_after_its_checkpoint(make_config):
    cfg = make_config(max_duration="6", eval_interval=None)
    train(cfg)
    straight = _rows(cfg.save_folder)
    # as if the run had died after logging step 6 but before its last checkpoint: resume from step 4
    shutil.rmtree(Path(cfg.save_folder) / "step6-unsharded")
    (Path(cfg.save_folder) / "latest-unsharded").unlink()
    (Path(cfg.save_folder) / "latest-unsharded").symlink_to("step4-unsharded")
    train(make_config(max_duration="6", eval_interval=None, try_load_latest_save=True))
    resumed = _rows(cfg.save_folder)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for key in ("train/CrossEntropyLoss", "optim/total_grad_norm", "optim/learning_rate_group0"):
        assert [r[key] for r in resumed] == [r[key] for r in straight], key


def test_a_fine_tune_resumed_from_its_own_save_keeps_its_state(make_config, tmp_path):
    """The reset flags are for the first start from load_path: resuming the run's own latest save restores
    its step, data position and optimizer, as the original does."""
    base = make_config(max_duration="2", eval_interval=None)
    train(base)
    tune = dict(
        max_duration="4", eval_interval=None, save_folder=str(tmp_path / "tune"), reset_trainer_state=True,
        reset_optimizer_state=True, load_path=f"{base.save_folder}/step2-unsharded",
    )  # fmt: skip
    train(make_config(**tune))
    straight = _rows(tune["save_folder"])
    shutil.rmtree(tmp_path / "tune" / "step4-unsharded")
    (tmp_path / "tune" / "latest-unsharded").unlink()
    (tmp_path / "tune" / "latest-unsharded").symlink_to("step2-unsharded")
    train(make_config(**tune, try_load_latest_save=True))
    resumed = _rows(tune["save_folder"])
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["train/CrossEntropyLoss"] for r in resumed] == [r["train/CrossEntropyLoss"] for r in straight]
