"""safetensors files written as a stream (no second copy in memory), and JSON + tensors for nested state.

`encode_state` splits a nested trainer state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays,
bytes) into a JSON-able tree and a flat dict of tensors, so that RNG states and loader states round-trip
without pickle: tensors go to safetensors, the rest to JSON, and tuples stay tuples.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as safetensors_from_bytes

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


class SafetensorsReader:
    """A .safetensors file read tensor by tensor through byte ranges: the header first, then each tensor
    when asked, into a fresh buffer. The file is never held whole (as bytes or as a memory map), so a
    reader's memory is one tensor, and an object store serves each byte once.

    Reading in file order also hashes the bytes on the way, so `verify` can check the whole file against a
    manifest entry without reading it a second time. With `reuse_buffer`, every read lands in one buffer
    (no fresh memory to fault in per tensor): a tensor is then valid only until the next read.
    """

    def __init__(self, url: str, stream: Any, *, reuse_buffer: bool = False):
        self.url, self._stream = url, stream
        self._scratch: torch.Tensor | None = torch.empty(0, dtype=torch.uint8) if reuse_buffer else None
        try:
            prefix = stream.read(8)
            (length,) = struct.unpack("<Q", prefix)
            head = stream.read(length)
            header = json.loads(head)
        except Exception as e:  # noqa: BLE001 - any parse failure means the same thing to the user
            raise CheckpointError(f"{url}: not a readable safetensors file ({e})") from e
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._data_start = 8 + length
        self.infos = dict(sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]))
        self._digest, self._hashed = storage.hasher(), self._data_start  # bytes hashed in order so far
        self._digest.update(prefix + head)

    def shape_and_dtype(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        info = self.infos[name]
        if info["dtype"] not in _FROM_CODE:
            raise CheckpointError(f"{self.url}: tensor {name!r} has unknown dtype {info['dtype']}")
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
        expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if expected != end - start:
            raise CheckpointError(f"{self.url}: tensor {name!r} has {end - start} bytes for shape {shape}")
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
    """Tensors and metadata of a .safetensors file's bytes."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
        return safetensors_from_bytes(data), metadata
    except Exception as e:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise CheckpointError(f"{url}: not a readable safetensors file ({e})") from e


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
