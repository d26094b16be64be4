"""safetensors files written as a stream (no second copy in memory), and JSON + tensors for nested state.

`encode_state` splits a nested trainer state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays,
bytes) into a JSON-able tree and a flat dict of tensors, so that RNG states and loader states round-trip
without pickle: tensors go to safetensors, the rest to JSON, and tuples stay tuples.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
import torch

from olmo_fn.checkpoint import storage
from olmo_fn.errors import CheckpointError

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


def _raw(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_safetensors(
    url: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """Write a .safetensors file tensor by tensor; returns its manifest entry (size and checksum)."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise CheckpointError(
                f"{url}: tensor {name!r} has dtype {t.dtype}, which safetensors cannot hold"
            )
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    prefix = struct.pack("<Q", len(head)) + head
    digest = storage.hasher()
    digest.update(prefix)
    with storage.open_write(url) as f:
        f.write(prefix)
        for t in tensors.values():
            raw = _raw(t)
            digest.update(raw)
            f.write(raw)
    return {"size": len(prefix) + offset, "xxh3": digest.hexdigest()}


_FROM_CODE = {code: dtype for dtype, code in _DTYPES.items()}
MAX_HEADER = 100_000_000  # the most the safetensors library itself accepts
_MAX_DIMS = 64


def _read_exactly(stream: Any, n: int) -> bytes:
    """n bytes from the stream's position (fewer only at the end of the file)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _stream_size(stream: Any) -> int | None:
    """The size of a file opened for reading (None when it cannot tell); the stream is left at its start."""
    try:
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(0)
    except (OSError, ValueError, AttributeError, NotImplementedError):
        return None
    return size if isinstance(size, int) else None


def strict_json(data: bytes, where: str) -> Any:
    """The JSON value of UTF-8 bytes whose objects each name a key once (Python's json would silently keep
    the last of a repeated key); CheckpointError starting with `where` otherwise."""

    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise CheckpointError(
                    f"{where} names {key[:80]!r} twice (a JSON reader would silently keep only the last); "
                    "the file is corrupt: restore it or load another checkpoint"
                )
            out[key] = value
        return out

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs_to_dict)
    except CheckpointError:
        raise
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        why = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise CheckpointError(f"{where} is not UTF-8 JSON ({why})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_info(url: str, name: str, info: Any) -> tuple[tuple[int, ...], torch.dtype, int, int]:
    """(shape, dtype, start, end) of one header entry, each checked against the others."""
    bad = f"{url}: tensor {name[:80]!r} of the safetensors header"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise CheckpointError(f"{bad} is not an object with dtype, shape and data_offsets")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in _FROM_CODE:
        raise CheckpointError(
            f"{bad} has unknown dtype {str(code)[:40]!r} (olmo_fn reads {', '.join(_FROM_CODE)})"
        )
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        raise CheckpointError(f"{bad} has shape {str(shape)[:80]}, not a list of at most {_MAX_DIMS} sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets):
        raise CheckpointError(f"{bad} has data_offsets {str(offsets)[:80]}, not [start, end] in bytes")
    start, end = offsets
    if end < start:
        raise CheckpointError(f"{bad} has data_offsets [{start}, {end}], which end before they start")
    dtype = _FROM_CODE[code]
    nbytes = torch.empty((), dtype=dtype).element_size()
    for d in shape if 0 not in shape else [0]:  # stops growing once past any file's size
        nbytes *= d
        if nbytes > end - start:
            break
    if nbytes != end - start:
        raise CheckpointError(
            f"{bad} has shape {shape} of {code} but data_offsets [{start}, {end}] hold {end - start} bytes"
        )
    return tuple(shape), dtype, start, end


def parse_header(url: str, header: Any, data_size: int | None) -> tuple[dict[str, str], dict[str, Any]]:
    """(metadata, tensor infos in file order) of a parsed safetensors header, refused with a CheckpointError
    unless the tensors tile the data exactly (`data_size` bytes after the header, when known): every
    entry well formed, its shape matching its byte range, no overlaps, gaps or bytes past the end."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{url}: not a safetensors file: its header is a JSON {type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{url}: the safetensors header's __metadata__ is not an object of strings")
    checked = {name: _tensor_info(url, name, info) for name, info in header.items()}
    order = sorted(checked, key=lambda n: checked[n][2:])
    past = [n for n in order if data_size is not None and checked[n][3] > data_size]
    if past:
        raise CheckpointError(
            f"{url}: tensor {past[0][:80]!r} ends at byte {checked[past[0]][3]} of the data, past its end "
            f"({data_size} bytes); the file is truncated or its header is wrong"
        )
    position = 0
    for name in order:
        start, end = checked[name][2:]
        if start != position:
            what = (
                "overlaps the tensor before it"
                if start < position
                else f"leaves bytes {position}-{start} unused"
            )
            raise CheckpointError(
                f"{url}: tensor {name[:80]!r} (data_offsets [{start}, {end}]) {what}; the header is corrupt"
            )
        position = end
    if data_size is not None and position != data_size:
        raise CheckpointError(
            f"{url}: {data_size - position} bytes follow the last tensor of the safetensors data; the file "
            "is corrupt or its header is wrong"
        )
    return metadata, {name: header[name] for name in order}


class SafetensorsReader:
    """A .safetensors file read tensor by tensor through byte ranges: the header first, then each tensor
    when asked, into a fresh buffer. The file is never held whole (as bytes or as a memory map), so a
    reader's memory is one tensor, and an object store serves each byte once.

    The header is checked whole before any tensor is read (see `parse_header`; its length against the
    file's size, so a corrupt length allocates nothing). Reading in file order also hashes the bytes on the
    way, so `verify` can check the whole file against a manifest entry without reading it a second time.
    With `reuse_buffer`, every read lands in one buffer (no fresh memory to fault in per tensor): a tensor
    is then valid only until the next read.
    """

    def __init__(self, url: str, stream: Any, *, reuse_buffer: bool = False):
        self.url, self._stream = url, stream
        self._scratch: torch.Tensor | None = torch.empty(0, dtype=torch.uint8) if reuse_buffer else None
        size = _stream_size(stream)
        prefix = _read_exactly(stream, 8)
        if len(prefix) < 8:
            raise CheckpointError(
                f"{url}: not a safetensors file: {len(prefix)} bytes, shorter than its header"
            )
        (length,) = struct.unpack("<Q", prefix)
        room = MAX_HEADER if size is None else min(MAX_HEADER, size - 8)
        if length > room:
            raise CheckpointError(
                f"{url}: not a safetensors file: its header length {length} is larger than "
                + (f"the file ({size} bytes)" if room < MAX_HEADER else f"safetensors allows ({MAX_HEADER})")
            )
        head = _read_exactly(stream, length)
        if len(head) < length:
            raise CheckpointError(f"{url}: file ends inside the safetensors header; it is truncated")
        data_size = None if size is None else size - 8 - length
        self.metadata, self.infos = parse_header(
            url, strict_json(head, f"{url}: the safetensors header"), data_size
        )
        self._data_start = 8 + length
        self._digest, self._hashed = storage.hasher(), self._data_start  # bytes hashed in order so far
        self._digest.update(prefix + head)

    def shape_and_dtype(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        info = self.infos[name]
        return tuple(info["shape"]), _FROM_CODE[info["dtype"]]

    def read(self, name: str) -> torch.Tensor:
        """One tensor, read from its byte range."""
        shape, dtype = self.shape_and_dtype(name)
        start, end = self.infos[name]["data_offsets"]
        buffer = self._buffer(end - start)
        if end > start:
            self._stream.seek(self._data_start + start)
            view, got = memoryview(buffer.numpy()), 0
            while got < end - start:
                n = self._stream.readinto(view[got:])
                if not n:
                    raise CheckpointError(f"{self.url}: file ends inside tensor {name!r}; it is truncated")
                got += n
        if self._data_start + start == self._hashed:
            self._digest.update(buffer.numpy())
            self._hashed = self._data_start + end
        return buffer.view(dtype).reshape(shape)

    def _buffer(self, nbytes: int) -> torch.Tensor:
        if self._scratch is None:
            return torch.empty(nbytes, dtype=torch.uint8)
        if self._scratch.numel() < nbytes:
            self._scratch = torch.empty(nbytes, dtype=torch.uint8)
        return self._scratch[:nbytes]

    def verify(self, entry: dict[str, Any]) -> None:
        """Check the bytes read so far against a manifest entry; every tensor must have been read in order."""
        if self._hashed != entry["size"] or self._digest.hexdigest() != entry["xxh3"]:
            raise CheckpointError(
                f"{self.url}: size/checksum {self._hashed}/{self._digest.hexdigest()} differs from the "
                f"manifest's {entry['size']}/{entry['xxh3']}; the file is corrupt or was changed after saving: "
                "restore it or load another checkpoint"
            )


def load_safetensors(data: bytes, url: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file's bytes (checked as `SafetensorsReader` checks a file)."""
    reader = SafetensorsReader(url, io.BytesIO(data))
    return {name: reader.read(name) for name in reader.infos}, reader.metadata


def encode_state(obj: Any, tensors: dict[str, torch.Tensor] | None = None, path: str = "") -> Any:
    """Nested state -> JSON-able tree; tensors, arrays and bytes are moved into `tensors` by path."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise CheckpointError(f"trainer state at {path or '/'}: keys must be strings")
        return {k: encode_state(v, tensors, f"{path}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [encode_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": path}
    if isinstance(obj, (bytes, bytearray)):
        tensors[path] = (
            torch.frombuffer(bytearray(obj), dtype=torch.uint8) if obj else torch.empty(0, dtype=torch.uint8)
        )
        return {"__bytes__": path}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"trainer state at {path}: cannot store a {type(obj).__name__} (use JSON types)")


def decode_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of encode_state."""
    if isinstance(tree, list):
        return [decode_state(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((key, value),) = tree.items()
        if key == "__tuple__":
            return tuple(decode_state(v, tensors) for v in value)
        if key == "__tensor__":
            return tensors[value]
        if key == "__ndarray__":
            return tensors[value].numpy()
        if key == "__bytes__":
            return tensors[value].numpy().tobytes()
    return {k: decode_state(v, tensors) for k, v in tree.items()}
