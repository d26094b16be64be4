"""Loopback servers for storage tests: an HTTP file server with Range support, moto (S3), a GCS emulator."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=a-[b]` support; `server.fail` lists status codes to answer first."""

    def log_message(self, *args):  # quiet
        pass

    def _maybe_fail(self) -> bool:
        fail = getattr(self.server, "fail", None)
        if fail:
            code = fail.pop(0)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False

    def do_HEAD(self):
        if not self._maybe_fail():
            super().do_HEAD()

    def do_GET(self):
        if self._maybe_fail():
            return
        self.server.requests.append((self.path, self.headers.get("Range")))
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        path = self.translate_path(self.path)
        if not match or not os.path.isfile(path):
            return super().do_GET()
        size = os.path.getsize(path)
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            self.wfile.write(f.read(end - start + 1))

    def end_headers(self):
        if self.command == "HEAD" or not self.headers.get("Range"):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()


@contextlib.contextmanager
def http_server(root: Path):
    """Serve root on http://127.0.0.1:PORT (yields the server: .url, .fail, .requests)."""
    handler = functools.partial(RangeHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.fail, server.requests = [], []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _wait(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def process_server(args: list[str], url: str, cwd: Path):
    """Run a server process until the context ends; yields its URL."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def moto_server(cwd: Path):
    port = free_port()
    exe = shutil.which("moto_server", path=str(BIN)) or "moto_server"
    return process_server([exe, "-H", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}", cwd)


def gcs_emulator(cwd: Path, bucket: str):
    port = free_port()
    exe = shutil.which("gcp-storage-emulator", path=str(BIN)) or "gcp-storage-emulator"
    args = [
        exe,
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
        "--default-bucket",
        bucket,
    ]
    return process_server(args, f"http://127.0.0.1:{port}", cwd)


class ByteCounter:
    """Counts the body bytes an HTTP server receives (request bodies) and serves (response bodies)."""

    def __init__(self):
        self.received = self.served = 0
        self._lock = threading.Lock()

    def add(self, received: int = 0, served: int = 0) -> None:
        with self._lock:
            self.received += received
            self.served += served

    def reset(self) -> None:
        with self._lock:
            self.received = self.served = 0


class _CountingInput:
    def __init__(self, stream, counter: ByteCounter):
        self.stream, self.counter = stream, counter

    def read(self, *args):
        data = self.stream.read(*args)
        self.counter.add(received=len(data))
        return data

    def readline(self, *args):
        data = self.stream.readline(*args)
        self.counter.add(received=len(data))
        return data

    def __iter__(self):
        for line in self.stream:
            self.counter.add(received=len(line))
            yield line


def _counting(app, counter: ByteCounter):
    def wrapped(environ, start_response):
        environ["wsgi.input"] = _CountingInput(environ["wsgi.input"], counter)
        for chunk in app(environ, start_response):
            counter.add(served=len(chunk))
            yield chunk

    return wrapped


@contextlib.contextmanager
def counting_moto_server():
    """moto's S3 in this process behind a WSGI layer that counts body bytes; yields (url, ByteCounter)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    counter = ByteCounter()
    app = _counting(DomainDispatcherApplication(create_backend_app), counter)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counter
    finally:
        server.shutdown()
        thread.join(10)
