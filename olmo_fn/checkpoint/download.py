"""Downloading official OLMo checkpoints listed in the release CSVs (`Step,Checkpoint Directory`).

Each file of the step's folder that exists (config.yaml, model/optim/train as .pt or .safetensors) is
fetched over HTTP into `{save_dir}/step{S}/`: complete files are skipped, partial ones (`*.part`) resumed
with a Range request, transient errors retried with exponential backoff. Nothing is written outside save_dir.
"""

from __future__ import annotations

import csv
import io
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from olmo_fn import retry
from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.manifest import parse_manifest
from olmo_fn.errors import CheckpointError, ConfigError
from olmo_fn.retry import TransientError

FILES = ("config.yaml", "model.safetensors", "model.pt", "optim.safetensors", "optim.pt", "train.pt")
_R2 = "r2://olmo-checkpoints/"
_HTTPS = "https://olmo-checkpoints.org/"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Row:
    """One checkpoint of a CSV."""

    step: str
    url: str
    ingredient: str | None = None


def read_csv(path: str) -> list[Row]:
    """The rows of a checkpoint CSV (local path or URL)."""
    text = storage.read_bytes(path).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or ())
    if not {"Step", "Checkpoint Directory"} <= fields:
        raise ConfigError(
            f"{path}: expected columns `Step,Checkpoint Directory` (optionally led by Ingredient)"
        )
    rows = [
        Row(r["Step"].strip(), normalise_url(r["Checkpoint Directory"]), r.get("Ingredient")) for r in reader
    ]
    return [r for r in rows if r.step]


def normalise_url(url: str) -> str:
    """r2://olmo-checkpoints/... -> https://olmo-checkpoints.org/..., with a trailing slash."""
    url = url.strip()
    if url.startswith(_R2):
        url = _HTTPS + url[len(_R2) :]
    return url.rstrip("/") + "/"


def pick_row(rows: list[Row], step: str, ingredient: str | None, directory: str | None = None) -> Row:
    """The row of a step (and ingredient, and directory); ConfigError naming the choices otherwise."""
    matches = [
        r for r in rows if r.step == str(step) and (ingredient is None or r.ingredient == str(ingredient))
    ]
    if directory is not None:
        matches = [r for r in matches if r.url == normalise_url(directory)] or matches[:0]
        if not matches:
            raise ConfigError(f"--directory {directory}: not a folder the CSV lists for step {step}")
    if not matches:
        steps = sorted({int(r.step) for r in rows if r.step.isdigit()})
        span = f"{steps[0]}..{steps[-1]}" if steps else "none"
        raise ConfigError(
            f"step {step} is not in the CSV ({len(steps)} steps, {span}); run `list` to see them"
        )
    if len({r.ingredient for r in matches}) > 1:
        choices = sorted(str(r.ingredient) for r in matches)
        raise ConfigError(f"step {step} exists for ingredients {choices}; pass --ingredient")
    if len({r.url for r in matches}) > 1:
        urls = " and ".join(sorted({r.url for r in matches}))
        raise ConfigError(f"step {step} is listed {len(matches)} times, at {urls}; pass --directory with one")
    return matches[0]


def target_dir(save_dir: str, row: Row) -> str:
    """{save_dir}/step{S} (ingredient{I}-step{S} for stage-2 CSVs), refusing anything that leaves save_dir."""
    if not re.fullmatch(r"\d+", row.step) or (row.ingredient and not re.fullmatch(r"\w+", row.ingredient)):
        raise ConfigError(f"CSV row step={row.step!r} ingredient={row.ingredient!r}: not a plain number/name")
    name = f"step{row.step}" if not row.ingredient else f"ingredient{row.ingredient}-step{row.step}"
    root = os.path.realpath(save_dir)
    out = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, out]) != root:
        raise ConfigError(f"{out} is outside --save-dir {root}")
    return out


def _request(url: str, method: str = "GET", start: int = 0, timeout: float = 60.0):
    headers = {"Range": f"bytes={start}-"} if start else {}
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 429 or e.code >= 500:
            raise TransientError(f"HTTP {e.code}") from e
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise TransientError(str(e)) from e


def with_retries(url: str, fn: Callable[[], object], attempts: int, backoff: float) -> object:
    """fn() with olmo_fn's retries of transient failures (announced on stderr); CheckpointError at the end."""
    return retry.retrying(url, fn, tries=attempts, first_wait=backoff, hint="--attempts sets how many tries")


def remote_size(url: str) -> int | None:
    """Content-Length of a file by HEAD, or None when it does not exist (404/403)."""
    try:
        with _request(url, "HEAD") as resp:
            return int(resp.headers.get("Content-Length", -1))
    except urllib.error.HTTPError as e:
        if e.code in (403, 404):
            return None
        raise CheckpointError(f"{url}: HTTP {e.code}") from e


def fetch(url: str, dest: str, size: int, bar: bool = True) -> None:
    """Download url to dest via dest.part, continuing a partial download with a Range request."""
    part = dest + ".part"
    start = os.path.getsize(part) if os.path.exists(part) else 0
    if start > size >= 0:
        os.remove(part)
        start = 0
    with _request(url, start=start) as resp:
        if start and resp.status != 206:  # the server ignored the range: start over
            start = 0
        with open(part, "ab" if start else "wb") as f, tqdm(
            total=size if size >= 0 else None, initial=start, unit="B", unit_scale=True,
            desc=os.path.basename(dest), disable=not bar,
        ) as progress:  # fmt: skip
            try:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    progress.update(len(chunk))
            except (ConnectionError, TimeoutError, OSError) as e:
                raise TransientError(str(e)) from e
    got = os.path.getsize(part)
    if size >= 0 and got != size:
        raise TransientError(f"got {got} of {size} bytes")
    os.replace(part, dest)


def _manifest_files(url: str, attempts: int, backoff: float) -> dict[str, int] | None:
    """name -> size of an olmo_fn checkpoint's files (its manifest.json last), or None without a manifest."""
    if (
        with_retries(url + "manifest.json", lambda: remote_size(url + "manifest.json"), attempts, backoff)
        is None
    ):
        return None
    data = with_retries(
        url + "manifest.json", lambda: _request(url + "manifest.json").read(), attempts, backoff
    )
    files = parse_manifest(data, f"{url}manifest.json")["files"]  # names inside the checkpoint only
    return {name: entry["size"] for name, entry in files.items()} | {"manifest.json": len(data)}


def download(
    csv_path: str,
    step: str,
    save_dir: str,
    ingredient: str | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    directory: str | None = None,
) -> list[str]:
    """Download every existing file of one step's checkpoint; returns the local paths. An olmo_fn checkpoint
    (it has a manifest.json) comes with every file its manifest lists, the manifest last."""
    row = pick_row(read_csv(csv_path), step, ingredient, directory)
    out = target_dir(save_dir, row)
    found = _manifest_files(row.url, attempts, backoff)
    for name in FILES if found is None else ():
        size = with_retries(row.url + name, lambda name=name: remote_size(row.url + name), attempts, backoff)
        if size is not None:
            found = (found or {}) | {name: size}
    found = found or {}
    if not found:
        raise CheckpointError(f"{row.url}: none of {', '.join(FILES)} exists there; check the CSV's URL")
    os.makedirs(out, exist_ok=True)
    paths = []
    for name, size in found.items():
        dest = os.path.join(out, *name.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not (os.path.exists(dest) and (size < 0 or os.path.getsize(dest) == size)):
            with_retries(
                row.url + name, lambda n=name, d=dest, s=size: fetch(row.url + n, d, s), attempts, backoff
            )
        paths.append(dest)
    return paths
