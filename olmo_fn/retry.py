"""Retries for remote storage: which failures deserve another try, and a bounded, jittered exponential backoff.

Object stores answer 500 or 503, time out, reset connections, cut bodies short and restart under load; each of
those is transient, while a 404, a 403 or a bad request is not and fails at once. Every remote operation of
olmo_fn (checkpoint saves and loads, the data loader's range reads, downloads) goes through `retrying`, on top
of whatever its fsspec backend retries by itself. The bound is `OLMO_FN_REMOTE_ATTEMPTS` tries (default 6)
and the first wait `OLMO_FN_REMOTE_BACKOFF` seconds (default 1), doubling up to 30 s: about a minute of
outage is ridden out. Each retry is announced on stderr; the last failure becomes one error line.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from olmo_fn.errors import CheckpointError, OlmoFnError

T = TypeVar("T")
MAX_WAIT = 30.0
_NOT_TRANSIENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
_TRANSIENT_NAMES = {  # by class name: the classes live in optional packages (aiohttp, botocore, fsspec)
    "ClientConnectionError",
    "ClientPayloadError",
    "ServerDisconnectedError",
    "ClientOSError",
    "ServerTimeoutError",
    "FSTimeoutError",
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "IncompleteReadError",
    "ResponseStreamingError",
    "IncompleteRead",
    "RemoteDisconnected",
    "ChunkedEncodingError",
}
_jitter = random.Random()  # never the global generator: training draws from that one


class TransientError(OSError):
    """A failure worth retrying that olmo_fn itself detected (a short read, a server error status)."""


def attempts() -> int:
    """How many times a remote operation is tried (OLMO_FN_REMOTE_ATTEMPTS, at least 1)."""
    return max(1, int(os.environ.get("OLMO_FN_REMOTE_ATTEMPTS", "6")))


def backoff() -> float:
    """The first wait between tries, in seconds (OLMO_FN_REMOTE_BACKOFF)."""
    return float(os.environ.get("OLMO_FN_REMOTE_BACKOFF", "1"))


def _status(e: BaseException) -> int | None:
    for name in ("status", "code", "status_code"):
        value = getattr(e, name, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(e, "response", None)  # botocore ClientError
    if isinstance(response, dict):
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return value if isinstance(value, int) else None
    return None


def is_transient(e: BaseException) -> bool:
    """Whether a failure of a remote operation may go away if tried again."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:  # a wrapped cause counts (s3fs and fsspec wrap errors)
        seen.add(id(e))
        if isinstance(e, OlmoFnError):
            return False
        if isinstance(e, _NOT_TRANSIENT):  # fsspec's HTTP size/info calls any failure "not found"
            return e.__cause__ is not None and is_transient(e.__cause__)
        if isinstance(e, (TransientError, ConnectionError, TimeoutError)):
            return True
        status = _status(e)
        if status is not None:
            return status >= 500 or status in (408, 429)
        if any(c.__name__ in _TRANSIENT_NAMES for c in type(e).__mro__):
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def reason(e: BaseException) -> str:
    """A short description of a failure for one line (of its transient cause, where fsspec wraps one)."""
    if isinstance(e, _NOT_TRANSIENT) and e.__cause__ is not None:
        return reason(e.__cause__)
    text = " ".join(str(e).split()) or ("timed out" if isinstance(e, TimeoutError) else type(e).__name__)
    return text if len(text) <= 160 else text[:157] + "..."


def retrying(
    what: str,
    fn: Callable[[], T],
    *,
    error: type[OlmoFnError] = CheckpointError,
    tries: int | None = None,
    first_wait: float | None = None,
    hint: str = "OLMO_FN_REMOTE_ATTEMPTS sets how many tries",
) -> T:
    """fn(), tried again after transient failures with exponential backoff; after the last try, `error`
    naming `what` (a URL, usually) and the last reason. Other failures pass through at once."""
    tries = attempts() if tries is None else tries
    wait = backoff() if first_wait is None else first_wait
    for attempt in range(tries):
        try:
            return fn()
        except Exception as e:
            if not is_transient(e):
                raise
            if attempt == tries - 1:
                raise error(
                    f"{what}: failed {tries} times ({reason(e)}); check the connection and the server, "
                    f"then run again ({hint})"
                ) from e
            pause = min(wait * 2**attempt, MAX_WAIT) * _jitter.uniform(0.5, 1.0)
            print(
                f"{what}: {reason(e)}; retrying in {pause:.2g} s ({attempt + 1}/{tries - 1})", file=sys.stderr
            )
            time.sleep(pause)
    raise AssertionError("unreachable")
