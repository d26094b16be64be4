"""Tracking: a run's metrics in its Aim repository, and the real Aim UI rendering them in a browser."""

import dataclasses
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from olmo_fn.train import train


def _run_with_aim(make_config):
    cfg = make_config(eval_on_load=True, console_log_interval=4)  # Aim still gets every step
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, aim=True))
    train(cfg)
    return cfg


def _runs(repo: str):
    """The runs of an Aim repo, read as `aim up` reads them (after indexing their finished chunks)."""
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    manager = RepoIndexManager.get_index_manager(Repo(repo))
    for run_hash in Repo(repo).list_all_runs():
        manager.index(run_hash)
    return list(Repo(repo).iter_runs())


def test_metrics_and_hparams_are_read_back_from_the_aim_repo(make_config, capsys):
    cfg = _run_with_aim(make_config)
    console = [line for line in capsys.readouterr().out.splitlines() if "train/CrossEntropyLoss=" in line]
    assert [line.split("]")[0] for line in console] == ["[step 4/8", "[step 8/8"]
    (run,) = _runs(cfg.tracking.aim_repo)
    assert run.name == "test-run" and run["hparams"]["optimizer"]["learning_rate"] == 0.01
    series = {}
    for metric in run.metrics():
        frame = metric.dataframe().sort_values("step")
        series[(metric.name, tuple(sorted(metric.context.to_dict().items())))] = frame["value"].tolist()
    train_loss = series[("train/CrossEntropyLoss", (("subset", "train"),))]
    assert len(train_loss) == 8 and train_loss[-1] < train_loss[0]
    for name in ("optim/learning_rate_group0", "optim/total_grad_norm", "throughput/device/tokens_per_second",
                 "train/Perplexity", "throughput/total_tokens", "System/Peak CPU Memory (MB)",
                 "throughput/device/mfu"):  # fmt: skip
        assert len(series[(name, (("subset", "train"),))]) == 8, name
    eval_loss = series[("eval/valid/CrossEntropyLoss", (("dataset", "valid"), ("subset", "eval")))]
    assert len(eval_loss) == 3 and eval_loss[-1] < eval_loss[0]  # steps 0, 4 and 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (tools/setup.sh installs it)"
)
def test_aim_ui_renders_the_runs_metrics_in_headless_chromium(make_config, tmp_path):
    cfg = _run_with_aim(make_config)
    (run,) = _runs(cfg.tracking.aim_repo)
    port = _free_port()
    aim = Path(sys.executable).with_name("aim")
    server = subprocess.Popen(
        [str(aim), "up", "--host", "127.0.0.1", "--port", str(port), "--repo", cfg.tracking.aim_repo],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{port}/", 60)
        page = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
             f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1400,900", "--virtual-time-budget=20000",
             "--dump-dom", f"http://127.0.0.1:{port}/runs/{run.hash}/metrics"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    dom = page.stdout
    assert "test-run" in dom
    for metric in ("train/CrossEntropyLoss", "optim/total_grad_norm", "optim/learning_rate_group0",
                   "throughput/device/tokens_per_second", "eval/valid/CrossEntropyLoss"):  # fmt: skip
        assert metric in dom, metric
