"""The lines a run starts with: what it loaded (path, kind, step, what was reset), and warnings for settings
that cannot do what they say (a warmup longer than the run, an eval interval past its end, token files made
by different tokenizers)."""

import dataclasses
import json
import shutil
from pathlib import Path

from olmo_fn.train import train


def _lines(capsys, start: str) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(start)]


def test_a_resumed_run_says_what_it_loaded(make_config, tmp_path, capsys):
    cfg = make_config(max_duration="4", stop_at=2, eval_interval=None)
    train(cfg)
    assert _lines(capsys, "loaded ") == []  # a fresh run loads nothing
    train(dataclasses.replace(cfg, stop_at=None, try_load_latest_save=True))
    step2 = f"{cfg.save_folder}/step2-unsharded"
    assert _lines(capsys, "loaded ") == [f"loaded {step2} (unsharded checkpoint, at step 2)"]
    fine_tune = dataclasses.replace(cfg, stop_at=None, load_path=step2, save_folder=str(tmp_path / "ft"),
                                    reset_optimizer_state=True, reset_trainer_state=True)  # fmt: skip
    train(fine_tune)
    assert _lines(capsys, "loaded ") == [
        f"loaded {step2} (unsharded checkpoint, weights only, training starts at step 0); reset: "
        "optimizer state (the learning rate warms up again), trainer state (step, data position)"
    ]


def test_settings_that_cannot_work_are_warned_about(make_config, capsys):
    cfg = make_config(max_duration="3", eval_interval=10, save_interval_unsharded=None)
    train(dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler, t_warmup=5)))
    assert _lines(capsys, "warning: ") == [
        "warning: scheduler.t_warmup=5 steps is longer than the schedule (3 steps): the learning rate never "
        "reaches its peak; lower --scheduler.t_warmup",
        "warning: eval_interval=10 is past the end of the run (step 3): in-loop evaluation runs only at the "
        "last step; lower --eval_interval",
    ]
    train(dataclasses.replace(cfg, eval_interval=3, save_overwrite=True))  # t_warmup=2 of 3 steps: fine
    assert _lines(capsys, "warning: ") == []


def test_token_files_of_different_tokenizers_are_warned_about(make_config, tmp_path, capsys):
    cfg = make_config(max_duration="2", eval_interval=None)
    first, second = (Path(p) for p in cfg.data.paths)
    other = tmp_path / "other"
    other.mkdir()
    shutil.move(second, other / second.name)
    for folder, digest in ((first.parent, "a" * 64), (other, "b" * 64)):
        (folder / "manifest.json").write_text(json.dumps({"tokenizer_sha256": digest}))
    data = dataclasses.replace(cfg.data, paths=[str(first), str(other / second.name)])
    train(dataclasses.replace(cfg, data=data))
    assert _lines(capsys, "warning: ") == [
        f"warning: the token files were made by different tokenizers: {first.parent} (tokenizer sha256 "
        f"aaaaaaaaaaaa); {other} (tokenizer sha256 bbbbbbbbbbbb); tokenise them all alike"
    ]
    (other / "manifest.json").write_text(json.dumps({"tokenizer_sha256": "a" * 64}))
    train(dataclasses.replace(cfg, data=data, save_overwrite=True))
    assert _lines(capsys, "warning: ") == []
