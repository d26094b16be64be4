"""Browse a run's metrics in Aim's web UI (`aim up`), stopped whole by Ctrl-C or by `kill` of this tool's PID.

`aim up` serves the UI from server processes it starts; stopping `aim up` by its own PID leaves them serving.
This tool starts `aim up` in a process group of its own, prints its own PID, and on Ctrl-C, `kill PID` or a
closed terminal stops every process of that group before it exits.

Examples:
    .venv/bin/python tools/aim_ui.py --repo runs/olmo-tiny/aim          # Ctrl-C stops it
    .venv/bin/python tools/aim_ui.py --repo runs/olmo-tiny/aim --port 43801 &
    kill $!                                                               # stops it and its server
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from olmo_fn.errors import ConfigError
from olmo_fn.launch import run_tool

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def group_members(pgid: int) -> list[int]:
    """The live processes (not zombies) of process group pgid, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def stop_group(pgid: int, grace_s: float = 15.0) -> None:
    """SIGTERM every process of the group, SIGKILL whatever still runs after grace_s, wait until none is left."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not group_members(pgid):
            return


def aim_executable() -> str:
    """The `aim` command of this Python's environment (or on PATH)."""
    beside = Path(sys.executable).with_name("aim")
    found = str(beside) if beside.exists() else shutil.which("aim")
    if found is None:
        raise ConfigError("the aim command is not installed here; install aim (tools/setup.sh does)")
    return found


def check_port_free(host: str, port: int) -> None:
    """ConfigError naming the port if something already listens on it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(
                f"--port {port}: {host}:{port} is in use ({e.strerror}); pass another --port"
            ) from e


def aim_ui(repo: str, host: str = "127.0.0.1", port: int = 43800) -> None:
    """Serve the Aim UI for a repository until Ctrl-C or `kill PID`, then stop all of its processes.

    Args:
        repo: The Aim repository folder: a run's tracking.aim_repo ({save_folder}/aim by default).
        host: Address to serve on (127.0.0.1: this machine only; 0.0.0.0: every interface).
        port: Port to serve on.
    """
    if not os.path.isdir(os.path.join(repo, ".aim")):
        raise ConfigError(
            f"--repo {repo}: not an Aim repository (no .aim folder); give a run's aim folder, "
            "e.g. runs/olmo-tiny/aim, written by a run with --tracking.aim"
        )
    check_port_free(host, port)
    cmd = [aim_executable(), "up", "--host", host, "--port", str(port), "--repo", repo]
    stopped: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
    print(
        f"Aim UI for {repo} at http://{host}:{port}; Ctrl-C or `kill {os.getpid()}` stops it", file=sys.stderr
    )
    try:
        while not stopped and server.poll() is None:
            time.sleep(0.2)
    finally:
        stop_group(server.pid)
        server.wait()
    if not stopped:
        raise ConfigError(
            f"aim up ended by itself with status {server.returncode}; its messages above say why"
        )
    print("stopped the Aim UI and its server", file=sys.stderr)


if __name__ == "__main__":
    run_tool(aim_ui)
