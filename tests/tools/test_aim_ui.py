"""tools/aim_ui.py: the README's line serves the real Aim UI, and its documented stops (`kill PID`, Ctrl-C)
leave no process of it running, where `aim up` killed by its PID would leave its server serving."""

import importlib.util
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from olmo_fn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tool_aim_ui", ROOT / "tools" / "aim_ui.py")
aim_ui = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aim_ui)


def readme_command() -> list[str]:
    """The README's command for the Aim UI, as a user copies it."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    (line,) = [line for line in lines if line.startswith(".venv/bin/python tools/aim_ui.py")]
    return shlex.split(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found


def serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["kill PID", "Ctrl-C"])
def test_the_documented_stop_leaves_no_aim_process(tmp_path, stop):
    from aim import Repo

    repo = tmp_path / "runs" / "olmo-tiny" / "aim"
    repo.mkdir(parents=True)
    Repo.from_path(str(repo), init=True)
    port = free_port()
    where = {".venv/bin/python": sys.executable, "tools/aim_ui.py": str(ROOT / "tools" / "aim_ui.py")}
    cmd = [where.get(c, c) for c in readme_command()]  # run from a folder holding runs/olmo-tiny/aim
    tool = subprocess.Popen([*cmd, "--port", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not serving(port):
            assert tool.poll() is None and time.monotonic() < deadline, tool.stderr.read()
            time.sleep(0.5)
        (aim,) = children(tool.pid)  # `aim up`, leader of its own group: it and its server processes
        assert len(aim_ui.group_members(aim)) >= 2  # more than `aim up` itself: what kill by its PID leaves
        tool.send_signal(stop)
        assert tool.wait(timeout=60) == 0
        assert aim_ui.group_members(aim) == [] and not serving(port)
        err = tool.stderr.read()
        assert f"Aim UI for runs/olmo-tiny/aim at http://127.0.0.1:{port}; Ctrl-C or `kill {tool.pid}`" in err
        assert err.rstrip().endswith("stopped the Aim UI and its server")
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.wait()


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^--repo .*nope: not an Aim repository \(no \.aim folder\)"):
        aim_ui.aim_ui(str(tmp_path / "nope"))
    (tmp_path / "aim" / ".aim").mkdir(parents=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"^--port {port}: 127.0.0.1:{port} is in use .*; pass another"
        ):
            aim_ui.aim_ui(str(tmp_path / "aim"), port=port)
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "aim_ui.py"), "--repo", str(tmp_path / "nope")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: --repo ")
