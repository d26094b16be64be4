"""olmo_fn.retry: what counts as transient, the bound on tries, the announcement of each retry."""

import errno
import re

import pytest

from olmo_fn import retry
from olmo_fn.errors import CheckpointError, DataError


class _Status(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


def _wrapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    "error, transient",
    [
        (ConnectionResetError(), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (_Status(500), True),
        (_Status(503), True),
        (_Status(429), True),
        (_Status(404), False),
        (_Status(403), False),
        (retry.TransientError("got 3 of 8 bytes"), True),
        (FileNotFoundError("gone"), False),
        (PermissionError("no"), False),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (CheckpointError("corrupt"), False),
        (ValueError("bad"), False),
        # fsspec's HTTP info/size call every failure "not found": its cause decides
        (_wrapped(FileNotFoundError("url"), ConnectionRefusedError()), True),
        (_wrapped(FileNotFoundError("url"), _Status(404)), False),
        # s3fs turns a 500 into an OSError whose cause holds the status
        (_wrapped(OSError(errno.EIO, "InternalError"), _Status(500)), True),
    ],
)
def test_which_failures_are_tried_again(error, transient):
    assert retry.is_transient(error) is transient


def test_tries_are_bounded_announced_and_end_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("OLMO_FN_REMOTE_ATTEMPTS", "3")
    monkeypatch.setenv("OLMO_FN_REMOTE_BACKOFF", "0.001")
    calls = []

    def failing():
        calls.append(1)
        raise ConnectionResetError("Connection reset by peer")

    with pytest.raises(DataError) as error:
        retry.retrying("s3://b/tokens.npy", failing, error=DataError)
    assert len(calls) == 3
    assert str(error.value).startswith("s3://b/tokens.npy: failed 3 times (Connection reset by peer); check")
    announced = capsys.readouterr().err.splitlines()
    assert len(announced) == 2 and all(re.search(r"retrying in [\d.e-]+ s \([12]/2\)$", a) for a in announced)


def test_a_failure_that_is_not_transient_is_not_tried_again(monkeypatch):
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("s3://b/none")

    with pytest.raises(FileNotFoundError):
        retry.retrying("s3://b/none", missing)
    assert len(calls) == 1


def test_a_transient_failure_then_success_returns_the_value(monkeypatch):
    monkeypatch.setenv("OLMO_FN_REMOTE_BACKOFF", "0.001")
    answers = iter([TimeoutError(), _Status(503), b"data"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert retry.retrying("gs://b/x", flaky) == b"data"
