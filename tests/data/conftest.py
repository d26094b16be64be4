"""Shared data-test helpers: the original OLMo's token files, a word-level tokenizer, a Range HTTP server."""

from __future__ import annotations

import http.server
import os
import re
import threading
from pathlib import Path

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

ORIGINAL_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "original_olmo" / "data"
WORDS = ["<|endoftext|>", "<|padding|>", "[UNK]", "<|", "|>", "user", "assistant", "system"]
WORDS += "hello world the quick brown fox jumps over lazy dog hi there how are you fine thanks".split() + [
    "\n"
]


@pytest.fixture
def original_data() -> Path:
    return ORIGINAL_DATA


def word_tokenizer(extra: list[str] = ()) -> Tokenizer:
    """A word-level tokenizer with known ids (<|endoftext|>=0, <|padding|>=1, [UNK]=2, then WORDS); keeps newlines."""
    vocab = {w: i for i, w in enumerate([*WORDS, *extra])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|[^\w\s]+|\n"), behavior="removed", invert=True)
    tok.add_special_tokens(
        [AddedToken("<|endoftext|>", special=True), AddedToken("<|padding|>", special=True)]
    )
    return tok


@pytest.fixture
def word_tokenizer_json(tmp_path: Path) -> Path:
    path = tmp_path / "words.json"
    word_tokenizer().save(str(path))
    return path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support and records the bytes it sent."""

    sent: list[int] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not path.is_file() or match is None:
            return super().do_GET()
        size = path.stat().st_size
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        RangeHandler.sent.append(len(body))  # before the reply: the client may check as soon as it has it
        self.end_headers()
        self.wfile.write(body)


class RangeServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # batches fetch their ranges concurrently: a short backlog drops connections


@pytest.fixture
def http_root(tmp_path: Path):
    """(directory, base URL) of a local HTTP server with Range support serving that directory."""
    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: RangeHandler(*a, directory=os.fspath(root), **k)
    server = RangeServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RangeHandler.sent = []
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
