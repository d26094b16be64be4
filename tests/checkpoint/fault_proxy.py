"""A loopback HTTP proxy that injects faults between a storage client and a test server (moto's S3, the GCS
emulator, the Range file server).

At seeded random requests (probability `rate`) it injects a fault of the kind injected least so far among those
that fit the request, until each kind has been injected `target` times:
    status500 / status503   answer 500 or 503 without passing the request on
    timeout                 read the request and never answer (the client's timeout fires)
    reset                   read the request, then reset the connection (TCP RST)
    truncated               pass the request on, send the answer's headers and half of its body, then reset
    restart                 the server goes down in the middle of an upload (half of its body read) or, for a
                            read-only server (`uploads=False`), of a download (half of the answer sent): every
                            connection is closed and the port refuses connections for `down` seconds, then it
                            serves again (the data behind it survives, as a restarted server's does)
`injected` counts what was done, by kind.
"""

from __future__ import annotations

import collections
import http.client
import random
import socket
import struct
import threading
import time
from urllib.parse import urlsplit

KINDS = ("status500", "status503", "timeout", "reset", "truncated", "restart")
_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


class _Request:
    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes):
        self.method, self.target, self.headers, self.body = method, target, headers, body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def _read_line(rfile) -> bytes:
    line = rfile.readline(65537)
    if not line:
        raise EOFError
    return line


def _read_head(conn: socket.socket, rfile) -> tuple[str, str, list[tuple[str, str]]] | None:
    try:
        line = _read_line(rfile).decode("latin-1").strip()
        while not line:  # tolerate blank lines between requests
            line = _read_line(rfile).decode("latin-1").strip()
        method, target, _ = line.split(" ", 2)
        headers = []
        while (h := _read_line(rfile).decode("latin-1").rstrip("\r\n")) != "":
            name, _, value = h.partition(":")
            headers.append((name.strip(), value.strip()))
        return method, target, headers
    except (EOFError, OSError, ValueError):
        return None


def _read_body(rfile, headers: list[tuple[str, str]], limit: int | None = None) -> bytes:
    lower = {k.lower(): v for k, v in headers}
    if "chunked" in lower.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size = int(_read_line(rfile).split(b";")[0].strip(), 16)
            if size == 0:
                while _read_line(rfile) not in (b"\r\n", b"\n"):
                    pass
                return bytes(out)
            out += rfile.read(size)
            rfile.readline()
    length = int(lower.get("content-length", "0") or 0)
    return rfile.read(length if limit is None else min(limit, length))


def _reset(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox does."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


class FaultProxy:
    """Proxy http://127.0.0.1:PORT -> backend URL with faults; use as a context manager (`.url`)."""

    def __init__(self, backend: str, *, seed: int, rate: float, target: int = 20, down: float = 0.1,
                 uploads: bool = True, kinds: tuple[str, ...] = KINDS):  # fmt: skip
        parts = urlsplit(backend)
        self.backend = (parts.hostname, parts.port)
        self.rng, self.rate, self.target, self.down, self.kinds = (
            random.Random(seed),
            rate,
            target,
            down,
            kinds,
        )
        self.injected: collections.Counter[str] = collections.Counter()
        self.requests, self.uploads = 0, uploads
        self.enabled = True
        self.fail_uploads = False  # True: every request with a body is answered 503 (a store that stays down)
        self.fail_uploads_to: str | None = None  # ... or only those whose path holds this text
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self._closing = False

    # ----- lifecycle
    def __enter__(self) -> FaultProxy:
        self._listen()
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        self._drop_all()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def done(self) -> bool:
        """Whether every kind reached its target."""
        return all(self.injected[k] >= self.target for k in self.kinds)

    def _listen(self) -> None:
        """Listen on self.port, or first on a free port below the ephemeral range (so that no client's
        outgoing connection takes the port while the server is down)."""
        for _ in range(400):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port or random.randrange(10000, 20000)))
                break
            except OSError:
                s.close()
                if self.port:
                    time.sleep(0.05)
        else:
            raise RuntimeError(f"fault proxy: cannot listen on port {self.port}")
        s.listen(128)
        self.port = s.getsockname()[1]
        with self._lock:
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _drop_all(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            _reset(conn)

    def _restart(self) -> bool:
        """Go down now and come back after `down` seconds; False (nothing done) while already down."""
        with self._lock:
            if self._listener is None:
                return False
        self._drop_all()

        def come_back() -> None:
            time.sleep(self.down)
            if not self._closing:
                self._listen()

        threading.Thread(target=come_back, daemon=True).start()
        return True

    # ----- one connection
    def _draw(self, request: _Request, has_body: bool) -> str | None:
        with self._lock:
            self.requests += 1
            upload = has_body and self.uploads
            if not self.enabled or self.rng.random() >= (max(self.rate, 0.5) if upload else self.rate):
                return None  # uploads are few: they are hit at least half the time
            fits = [k for k in self.kinds if self.injected[k] < self.target]
            fits = [
                k for k in fits if k != "restart" or (has_body if self.uploads else request.method == "GET")
            ]
            fits = [k for k in fits if k != "truncated" or request.method == "GET"]
            if not fits:
                return None
            fewest = min(self.injected[k] for k in fits)  # the kind furthest from its target first
            kind = self.rng.choice([k for k in fits if self.injected[k] == fewest])
            self.injected[kind] += 1
            return kind

    def _uncount(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] -= 1

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while True:
                head = _read_head(conn, rfile)
                if head is None:
                    return
                request = _Request(*head, b"")
                length = int(request.header("content-length") or 0)
                chunked = "chunked" in (request.header("transfer-encoding") or "").lower()
                kind = self._draw(request, has_body=length > 0 or chunked)
                refused = self.fail_uploads or (self.fail_uploads_to or "\0") in request.target
                if refused and (length > 0 or chunked):
                    kind = "status503"
                if (request.header("expect") or "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if kind == "restart" and self.uploads:
                    _read_body(rfile, request.headers, limit=max(1, length // 2))
                    if not self._restart():
                        self._uncount(kind)
                    return
                request.body = _read_body(rfile, request.headers)
                if kind == "reset":
                    _reset(conn)
                    return
                if kind == "timeout":
                    conn.settimeout(20)
                    try:
                        while conn.recv(65536):  # until the client gives up and closes
                            pass
                    except OSError:
                        pass
                    return
                if kind in ("status500", "status503"):
                    code = int(kind[-3:])
                    body = f"<Error><Code>{'InternalError' if code == 500 else 'ServiceUnavailable'}</Code></Error>"
                    conn.sendall(
                        f"HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                    )
                    continue
                status, reason, headers, body = self._forward(request)
                out = [f"HTTP/1.1 {status} {reason}\r\n".encode()]
                for k, v in headers:
                    if k.lower() in _HOP or (k.lower() == "content-length" and request.method != "HEAD"):
                        continue
                    out.append(f"{k}: {v}\r\n".encode("latin-1"))
                if request.method != "HEAD" and status not in (204, 304):
                    out.append(f"Content-Length: {len(body)}\r\n".encode())
                out.append(b"\r\n")
                if kind in ("truncated", "restart"):
                    if len(body) < 2:  # nothing to cut: not injected after all
                        self._uncount(kind)
                    else:
                        conn.sendall(b"".join(out) + body[: len(body) // 2])
                        if kind != "restart" or not self._restart():
                            _reset(conn)
                            if kind == "restart":
                                self._uncount(kind)
                        return
                conn.sendall(b"".join(out) + body)
                if (request.header("connection") or "").lower() == "close":
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _forward(self, request: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        backend = http.client.HTTPConnection(*self.backend, timeout=60)
        try:
            backend.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
            for k, v in request.headers:
                if k.lower() not in _HOP and k.lower() != "content-length":
                    backend.putheader(k, v)
            if request.body or request.method in ("PUT", "POST", "PATCH"):
                backend.putheader("Content-Length", str(len(request.body)))
            backend.endheaders(request.body or None)
            resp = backend.getresponse()
            body = resp.read()
            return resp.status, resp.reason, resp.getheaders(), body
        finally:
            backend.close()
