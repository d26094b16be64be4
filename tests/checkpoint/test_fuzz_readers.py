"""Fuzzing the checkpoint readers (hypothesis, seeded and bounded): random bytes and mutations of valid
files. Property: every input either loads correctly or raises a CheckpointError of one line naming the
file; never another exception, and never tensors that differ from what the safetensors library reads."""

import base64
import io
import json
import math
import os
import pickle
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.manifest import parse_manifest
from olmo_fn.checkpoint.olmo_dir import decode_key, load_pt
from olmo_fn.checkpoint.tensors import SafetensorsReader, load_safetensors
from olmo_fn.errors import CheckpointError


def fuzz(n: int):
    """n examples, the same ones every run (OLMO_FN_FUZZ_SCALE=k: k times as many, new ones each run)."""
    scale = int(os.environ.get("OLMO_FN_FUZZ_SCALE", "1"))
    return settings(max_examples=n * scale, deadline=None, derandomize=scale == 1, database=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def _refused_in_one_line(error: CheckpointError, name: str) -> None:
    message = str(error)
    assert "\n" not in message and message.startswith(name), message


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "f.safetensors"


VALID = safetensors.torch.save(
    {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int16),
     "e": torch.empty(0, 4), "s": torch.tensor(7, dtype=torch.int64)},
    {"format": "pt"},
)  # fmt: skip
HEADER_END = 8 + struct.unpack("<Q", VALID[:8])[0]


def _read_both(data: bytes, scratch: Path) -> None:
    """Both readers (of bytes, and of a file by byte ranges) agree with the safetensors library, or refuse
    in one line naming the file (the library refuses too, but says nothing of which file)."""
    scratch.write_bytes(data)
    try:
        with storage.open_read(str(scratch)) as f:
            reader = SafetensorsReader(str(scratch), f)
            streamed = {name: reader.read(name).clone() for name in reader.infos}
            reader.verify(storage.entry(data))  # every byte hashed on the way
    except CheckpointError as e:
        _refused_in_one_line(e, f"{scratch}: ")
        with pytest.raises(CheckpointError) as e:
            load_safetensors(data, "f.safetensors")
        _refused_in_one_line(e.value, "f.safetensors: ")
        return
    tensors, metadata = load_safetensors(data, "f.safetensors")
    assert metadata == reader.metadata and list(tensors) == list(streamed)
    assert list(tensors) == sorted(tensors, key=lambda k: _offsets(data)[k])  # in file order
    reference = safetensors.torch.load(data)  # what we read, the library reads the same
    assert sorted(reference) == sorted(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(reference[name], tensor) and reference[name].dtype == tensor.dtype, name
        assert torch.equal(streamed[name], tensor), name


def _offsets(data: bytes) -> dict[str, list[int]]:
    (length,) = struct.unpack("<Q", data[:8])
    return {k: v["data_offsets"] for k, v in json.loads(data[8 : 8 + length]).items() if k != "__metadata__"}


@fuzz(150)
@given(st.binary(max_size=200))
def test_random_bytes(scratch, data):
    _read_both(data, scratch)


@fuzz(150)
@given(st.binary(min_size=8, max_size=8), st.binary(max_size=120))
def test_random_header_after_a_plausible_length(scratch, length, rest):
    _read_both(struct.pack("<Q", struct.unpack("<Q", length)[0] % 160) + rest, scratch)


@fuzz(300)
@given(st.lists(st.tuples(st.integers(0, HEADER_END - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_header_bytes_changed(scratch, flips):
    _read_both(_flipped(VALID, flips), scratch)


@fuzz(100)
@given(st.integers(0, len(VALID) - 1))
def test_truncated(scratch, n):
    _read_both(VALID[:n], scratch)


@fuzz(100)
@given(st.integers(0, 2**64 - 1))
def test_length_field_changed(scratch, length):
    _read_both(struct.pack("<Q", length) + VALID[8:], scratch)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
SIZES = {"F32": 4, "I16": 2, "BF16": 2, "U8": 1, "BOOL": 1, "F64": 8}
TENSORS = st.lists(
    st.tuples(st.sampled_from(sorted(SIZES)), st.lists(st.integers(0, 3), max_size=3)), min_size=1, max_size=4
)


@st.composite
def headers(draw) -> tuple[str, int]:
    """(header JSON text, data size): a valid header (tensors laid out in a random order, metadata or not),
    usually with one thing changed: a field replaced by any JSON value, an offset moved, a name repeated,
    bytes missing or added."""
    tensors = draw(TENSORS)
    order = draw(st.permutations(range(len(tensors))))
    header, offset = {}, 0
    for i in order:
        code, shape = tensors[i]
        nbytes = SIZES[code] * math.prod(shape)
        header[f"t{i}"] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = dict(sorted(header.items()))  # listed by name, laid out in another order
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
    change = draw(st.sampled_from(["none", "field", "offset", "name", "size", "metadata"]))
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    if change == "field":
        header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(JSON)
    elif change == "offset":
        header[name]["data_offsets"][draw(st.integers(0, 1))] += draw(st.integers(-5, 5))
    elif change == "size":
        offset += draw(st.integers(-5, 5).filter(bool))
    elif change == "metadata":
        header["__metadata__"] = draw(JSON)
    text = json.dumps(header)
    if change == "name" and len(header) > 1:
        other = draw(st.sampled_from(sorted(k for k in header if k not in (name, "__metadata__")) or [name]))
        text = text.replace(f'"{other}"', f'"{name}"')
    return text + draw(st.sampled_from(["", " ", "  \n"])), max(offset, 0)


@fuzz(300)
@given(headers())
def test_structured_headers(scratch, header_and_size):
    text, data_size = header_and_size
    head = text.encode()
    _read_both(struct.pack("<Q", len(head)) + head + bytes(i % 251 for i in range(data_size)), scratch)


# --- the original OLMo key decoder ------------------------------------------------------------------------

KEY = pickle.dumps((("transformer", "blocks", 0, "att_proj.weight"), False))


def _decoded_or_refused(key: str) -> None:
    try:
        path, pickled = decode_key(key, "m.safetensors")
    except CheckpointError as e:
        _refused_in_one_line(e, "m.safetensors: safetensors key ")
        return
    assert isinstance(path, tuple) and path and type(pickled) is bool
    assert all(type(k) in (str, int) for k in path)


@fuzz(200)
@given(st.text(max_size=60))
def test_random_keys(key):
    _decoded_or_refused(key)


@fuzz(300)
@given(st.lists(st.tuples(st.integers(0, len(KEY) - 1), st.integers(1, 255)), min_size=1, max_size=3))
def test_pickled_keys_changed(flips):
    _decoded_or_refused(base64.urlsafe_b64encode(_flipped(KEY, flips)).decode())


@fuzz(200)
@given(st.binary(max_size=40) | st.builds(lambda v: pickle.dumps(v), JSON))
def test_pickled_keys_random(data):
    _decoded_or_refused(base64.urlsafe_b64encode(data).decode())


PT = io.BytesIO()
torch.save({"w": torch.arange(4.0), "step": 3, "rng": [1, 2]}, PT)
PT = PT.getvalue()


def _pt_or_refused(data: bytes, scratch: Path) -> None:
    path = scratch.with_suffix(".pt")
    path.write_bytes(data)
    try:
        loaded = load_pt(str(path))
    except CheckpointError as e:
        _refused_in_one_line(e, f"{path}: ")
        return
    assert loaded is not None


@pytest.mark.filterwarnings("ignore:Detected pickle protocol", "ignore:Defining your `__torch_function__`")
@fuzz(100)
@given(st.binary(max_size=100) | st.lists(st.tuples(st.integers(0, len(PT) - 1), st.integers(1, 255)), min_size=1,
                                           max_size=3).map(lambda flips: _flipped(PT, flips)))  # fmt: skip
def test_pt_files(scratch, data):
    _pt_or_refused(data, scratch)


def _flipped(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for i, x in flips:
        out[i] ^= x
    return bytes(out)


# --- the manifest reader ----------------------------------------------------------------------------------

MANIFEST = json.dumps({"format": "olmo_fn", "version": 1, "kind": "unsharded", "step": 3,
                       "files": {"model.safetensors": {"size": 10, "xxh3": "0123456789abcdef"},
                                 "train/rank0.json": {"size": 0, "xxh3": "ef46db3751d8e999"}}}).encode()  # fmt: skip


def _manifest_or_refused(data: bytes) -> None:
    try:
        manifest = parse_manifest(data, "ck/manifest.json")
    except CheckpointError as e:
        _refused_in_one_line(e, "ck/manifest.json")
        return
    assert manifest["kind"] in ("unsharded", "sharded") and manifest["step"] >= 0
    for name, entry in manifest["files"].items():
        assert ".." not in name.split("/") and not name.startswith("/")
        assert entry["size"] >= 0 and isinstance(entry["xxh3"], str)


@fuzz(150)
@given(st.binary(max_size=100))
def test_random_manifests(data):
    _manifest_or_refused(data)


@fuzz(300)
@given(st.lists(st.tuples(st.integers(0, len(MANIFEST) - 1), st.integers(1, 255)), min_size=1, max_size=3))
def test_manifest_bytes_changed(flips):
    _manifest_or_refused(_flipped(MANIFEST, flips))


@fuzz(200)
@given(st.fixed_dictionaries({"format": st.just("olmo_fn") | JSON, "kind": st.sampled_from(["unsharded", "sharded"]) | JSON,
                              "step": st.integers(-1, 5) | JSON,
                              "files": st.dictionaries(st.text(max_size=12), st.fixed_dictionaries(
                                  {"size": st.integers(-1, 9) | JSON, "xxh3": st.text(max_size=4) | JSON}) | JSON,
                                  max_size=3) | JSON}))  # fmt: skip
def test_structured_manifests(manifest):
    _manifest_or_refused(json.dumps(manifest).encode())
