"""Safetensors files that lie: each corrupt header is refused with one CheckpointError naming the file and
what is wrong (never a crash, a huge allocation or tensors silently wrong), by the reader itself and through
the loads a user runs (`--load_path` is `load_checkpoint`) of Hugging Face, original OLMo and olmo_fn folders."""

import json
import shutil
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint, storage
from olmo_fn.checkpoint.tensors import SafetensorsReader, load_safetensors
from olmo_fn.errors import CheckpointError
from olmo_fn.model import Transformer

ORIGINAL_ST = Path(__file__).resolve().parents[1] / "fixtures" / "original_olmo" / "olmo1_st"
F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def _file(header: dict | str | bytes, data: bytes = bytes(8), length: int | None = None) -> bytes:
    """A safetensors file of a header (a dict, or JSON text or bytes as it stands) and data bytes."""
    head = (
        header
        if isinstance(header, bytes)
        else (header if isinstance(header, str) else json.dumps(header)).encode()
    )
    return struct.pack("<Q", len(head) if length is None else length) + head + data


def _two(a=(0, 8), b=(8, 16), **extra) -> dict:
    return {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": list(a)},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": list(b)},
        **extra,
    }


BAD = {  # name: (file bytes, what the error says)
    "empty": (b"", "shorter than its header"),
    "short length field": (b"\x05\x00\x00", "shorter than its header"),
    "header length larger than the file": (_file({"a": F32}, length=1000), r"header length 1000 is larger than the file \(\d+ bytes\)"),
    "header length 2**63": (_file({"a": F32}, length=2**63), "is larger than the file"),
    "header not JSON": (_file("{not json"), "safetensors header is not UTF-8 JSON"),
    "header not UTF-8": (_file(b'{"\xff": 1}'), "safetensors header is not UTF-8 JSON"),
    "header a list": (_file("[1, 2]"), "header is a JSON list"),
    "header a number": (_file("8"), "header is a JSON int"),
    "header nested too deep": (_file("[" * 100_000 + "]" * 100_000), "not UTF-8 JSON"),
    "entry not an object": (_file({"a": [1, 2]}), "'a' of the safetensors header is not an object"),
    "entry without offsets": (_file({"a": {"dtype": "F32", "shape": [2]}}), "'a' .* is not an object with"),
    "unknown dtype": (_file({"a": {**F32, "dtype": "F4"}}), "'a' .* has unknown dtype 'F4'"),
    "dtype not a string": (_file({"a": {**F32, "dtype": 7}}), "unknown dtype '7'"),
    "shape not sizes": (_file({"a": {**F32, "shape": [2.0]}}), r"has shape \[2.0\], not a list"),
    "negative size": (_file({"a": {**F32, "shape": [-2]}}), "has shape"),
    "bool size": (_file({"a": {**F32, "shape": [True, 2]}}), "has shape"),
    "shape and byte range differ": (_file({"a": {**F32, "shape": [3]}}), r"shape \[3\] of F32 but data_offsets \[0, 8\] hold 8 bytes"),
    "huge shape": (_file({"a": {**F32, "shape": [2**40, 2**40, 2**40]}}), "but data_offsets"),
    "offsets reversed": (_file(_two(a=(8, 0), b=(8, 16)), bytes(16)), r"\[8, 0\], which end before they start"),
    "offsets not two": (_file({"a": {**F32, "data_offsets": [0]}}), "not \\[start, end\\]"),
    "offsets past the end": (_file({"a": {**F32, "data_offsets": [1 << 40, (1 << 40) + 8]}}), "ends at byte .* past its end"),
    "truncated data": (_file(_two(), bytes(12)), "'b' ends at byte 16 of the data, past its end \\(12 bytes\\)"),
    "overlapping offsets": (_file(_two(a=(0, 8), b=(4, 12)), bytes(12)), "'b' .*overlaps the tensor before it"),
    "same range twice": (_file(_two(a=(0, 8), b=(0, 8)), bytes(8)), "overlaps the tensor before it"),
    "a gap": (_file(_two(a=(0, 8), b=(12, 20)), bytes(20)), "leaves bytes 8-12 unused"),
    "bytes after the last tensor": (_file({"a": F32}, bytes(12)), "4 bytes follow the last tensor"),
    "duplicate tensor names": (_file(json.dumps(_two()).replace('"b"', '"a"'), bytes(16)), "header names 'a' twice"),
    "duplicate field": (_file('{"a": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}'), "names 'dtype' twice"),
    "metadata not strings": (_file({"__metadata__": {"format": 1}, "a": F32}), "__metadata__ is not an object of strings"),
    "metadata a list": (_file({"__metadata__": ["pt"], "a": F32}), "__metadata__"),
}  # fmt: skip


def _one_line_naming(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.startswith(name), message


@pytest.mark.parametrize("case", BAD)
def test_a_corrupt_file_is_refused_by_both_readers(tmp_path, case):
    data, says = BAD[case]
    with pytest.raises(CheckpointError, match=says) as e:
        load_safetensors(data, "x.safetensors")
    _one_line_naming(e, "x.safetensors: ")
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    with storage.open_read(str(path)) as f, pytest.raises(CheckpointError, match=says) as e:
        SafetensorsReader(str(path), f)
    _one_line_naming(e, f"{path}: ")


def test_what_the_format_allows_loads_exactly():
    """Tensors listed in another order than their bytes, empty tensors, scalars, null metadata, padding."""
    header = {
        "__metadata__": None,
        "z": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
        "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [16, 16]},
        "a": {"dtype": "BF16", "shape": [], "data_offsets": [16, 18]},
    }
    data = (
        struct.pack("<qq", 7, -3)
        + torch.tensor([1.5], dtype=torch.bfloat16).view(torch.uint8).numpy().tobytes()
    )
    tensors, metadata = load_safetensors(_file(json.dumps(header) + "    ", data), "x")
    assert metadata == {} and list(tensors) == ["z", "e", "a"]  # in file order
    assert tensors["z"].tolist() == [7, -3] and tensors["e"].shape == (0, 3) and tensors["a"].item() == 1.5
    reference = {"w": torch.randn(3, 5), "i": torch.arange(4, dtype=torch.int32)}
    tensors, metadata = load_safetensors(safetensors.torch.save(reference, {"format": "pt"}), "y")
    assert metadata == {"format": "pt"} and all(torch.equal(tensors[k], v) for k, v in reference.items())


# --- through the loads a user runs -----------------------------------------------------------------------


def _corrupt(path: Path, case: str) -> None:
    """Rewrite a safetensors file as it would be with one corruption of `case` (its tensors kept)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header, rest = json.loads(data[8 : 8 + length]), data[8 + length :]
    names = [k for k in header if k != "__metadata__"]
    first, second = sorted(names, key=lambda k: header[k]["data_offsets"])[:2]
    if case == "duplicate tensor names":
        text = json.dumps(header).replace(json.dumps(second), json.dumps(first))
        path.write_bytes(_file(text, rest))
    elif case == "offsets past the end":
        header[first]["data_offsets"] = [len(rest), len(rest) + header[first]["data_offsets"][1]]
        path.write_bytes(_file(header, rest))
    elif case == "header length larger than the file":
        path.write_bytes(struct.pack("<Q", len(data)) + data[8:])
    elif case == "shape and byte range differ":
        header[first]["shape"] = [*header[first]["shape"], 2]
        path.write_bytes(_file(header, rest))
    else:
        raise AssertionError(case)


PUBLIC = {  # case: what the error says about a real model file
    "duplicate tensor names": "the safetensors header names '.+' twice",
    "offsets past the end": r"tensor '.+' ends at byte \d+ of the data, past its end",
    "header length larger than the file": r"header length (\d+) is larger than the file \(\1 bytes\)",
    "shape and byte range differ": r"has shape \[.+, 2\] of F32 but data_offsets",
}


def _load(folder: Path) -> None:
    model = Transformer(model_config_of_checkpoint(str(folder)))
    load_checkpoint(str(folder), model, torch.optim.AdamW(model.parameters()))


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    from olmo_fn.checkpoint.hf_dir import write_hf_dir

    cfg = model_config_of_checkpoint(str(ORIGINAL_ST))
    folder = tmp_path_factory.mktemp("hf") / "hf"
    write_hf_dir(str(folder), Transformer(cfg).state_dict(), cfg)
    return folder


@pytest.mark.parametrize("case", PUBLIC)
@pytest.mark.parametrize("kind", ["hf", "original"])
def test_a_corrupt_model_file_is_refused_by_load_checkpoint(tmp_path, hf_folder, kind, case):
    folder = tmp_path / kind
    shutil.copytree(hf_folder if kind == "hf" else ORIGINAL_ST, folder)
    _corrupt(folder / "model.safetensors", case)
    with pytest.raises(CheckpointError, match=PUBLIC[case]) as e:
        _load(folder)
    _one_line_naming(e, f"{folder}/model.safetensors: ")


def test_an_hf_tensor_in_two_shards_is_refused(tmp_path, hf_folder):
    folder = tmp_path / "hf"
    shutil.copytree(hf_folder, folder)
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    safetensors.torch.save_file({k: tensors[k] for k in names[:3]}, folder / "a.safetensors")
    safetensors.torch.save_file({k: tensors[k] for k in names[2:]}, folder / "b.safetensors")
    weight_map = {k: "a.safetensors" for k in names[:3]} | {k: "b.safetensors" for k in names[3:]}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(
        CheckpointError, match=f"tensor '{names[2]}' is in both a.safetensors and b.safetensors"
    ):
        _load(folder)
    index.write_text(json.dumps({"weight_map": {names[0]: "../outside.safetensors"}}))
    with pytest.raises(
        CheckpointError, match="weight_map names '../outside.safetensors', not a file of the folder"
    ):
        _load(folder)
    index.write_text("{")
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: not JSON"):
        _load(folder)


def _original_with_keys(folder: Path, keys: dict[bytes, torch.Tensor]) -> None:
    import base64

    shutil.copytree(ORIGINAL_ST, folder)
    tensors = {base64.urlsafe_b64encode(k).decode(): v for k, v in keys.items()}
    safetensors.torch.save_file(tensors, folder / "model.safetensors")


@pytest.mark.parametrize(
    "key, says",
    [
        (b"not a pickle", "is not an original OLMo key: not a plain pickled value"),
        (__import__("pickle").dumps(["transformer.wte.weight"]), "decodes to no \\(key path, bool\\) tuple"),
        (__import__("pickle").dumps(((), False)), "decodes to no \\(key path, bool\\) tuple"),
        (__import__("pickle").dumps((("a", 1.5), False)), "decodes to no \\(key path, bool\\) tuple"),
    ],
)
def test_an_original_key_that_decodes_to_no_key_tuple_is_refused(tmp_path, key, says):
    _original_with_keys(tmp_path / "st", {key: torch.zeros(2)})
    with pytest.raises(CheckpointError, match=says) as e:
        _load(tmp_path / "st")
    _one_line_naming(e, f"{tmp_path}/st/model.safetensors: safetensors key ")


def test_two_original_keys_for_one_place_are_refused(tmp_path):
    import pickle

    name = "transformer.wte.weight"
    keys = {pickle.dumps(((name,), False), protocol=2): torch.zeros(2),
            pickle.dumps(((name,), False), protocol=4): torch.ones(2)}  # fmt: skip
    _original_with_keys(tmp_path / "same", keys)
    with pytest.raises(CheckpointError, match=f"two keys decode to {name}"):
        _load(tmp_path / "same")
    keys = {pickle.dumps(((name,), False)): torch.zeros(2), pickle.dumps(((name, "x"), False)): torch.ones(2)}
    _original_with_keys(tmp_path / "through", keys)
    with pytest.raises(CheckpointError, match=f"two keys decode to {name}"):
        _load(tmp_path / "through")
    keys = {pickle.dumps(((name,), True)): torch.frombuffer(bytearray(b"\x80\x04junk"), dtype=torch.uint8)}
    _original_with_keys(tmp_path / "value", keys)
    with pytest.raises(CheckpointError, match=f"the value of {name}: not a plain pickled value"):
        _load(tmp_path / "value")
