"""An olmo_fn checkpoint whose manifest.json lies (sizes, checksums, files listed but missing or present but
unlisted, not JSON at all): every load is refused with one line naming the file, before a wrong tensor or
a silently skipped optimizer state could be used. Also a safetensors file whose header lies while the
manifest was rewritten to agree: the reader refuses it itself."""

import json
import shutil
from pathlib import Path

import pytest

from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint, save_checkpoint, storage
from olmo_fn.checkpoint.load import read_model_state, unshard
from olmo_fn.errors import CheckpointError
from tests.checkpoint.helpers import config_dict, fresh, tiny_cfg, trained, trainer_state
from tests.checkpoint.test_hostile_safetensors import _corrupt

CFG = tiny_cfg(n_layers=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """One unsharded and one sharded checkpoint, copied by each test before it changes them."""
    model, opt = trained(CFG, steps=1)
    root = tmp_path_factory.mktemp("saved")
    return {
        kind: Path(save_checkpoint(str(root), step, model, opt, trainer_state(1), config_dict(CFG),
                                   sharded=kind == "sharded", keep=-1))
        for step, kind in enumerate(["unsharded", "sharded"], start=1)
    }  # fmt: skip


def _copy(saved, tmp_path, kind="unsharded") -> Path:
    folder = tmp_path / kind
    shutil.copytree(saved[kind], folder)
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / storage.MANIFEST).read_text())
    edit(manifest)
    (folder / storage.MANIFEST).write_text(json.dumps(manifest))


def _refused(folder: Path, says: str) -> str:
    with pytest.raises(CheckpointError, match=says) as e:
        load_checkpoint(str(folder), *fresh(CFG))
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(folder)), message
    return message


UNSHARDED = ["model.safetensors", "optim.safetensors", "train.json", "train.safetensors", "config.yaml"]


@pytest.mark.parametrize("name", UNSHARDED)
def test_a_size_that_lies_is_refused_before_reading(saved, tmp_path, name):
    folder = _copy(saved, tmp_path)
    _edit_manifest(folder, lambda m: m["files"][name].update(size=m["files"][name]["size"] + 1))
    _refused(folder, f"{name} has (\\d+) bytes, manifest.json says (\\d+); the file is corrupt")


@pytest.mark.parametrize("name", UNSHARDED)
def test_a_checksum_that_lies_is_refused(saved, tmp_path, name):
    folder = _copy(saved, tmp_path)
    _edit_manifest(folder, lambda m: m["files"][name].update(xxh3="0123456789abcdef"))
    _refused(
        folder, f"{name}: size/checksum \\d+/[0-9a-f]+ differs from the manifest's \\d+/0123456789abcdef"
    )


@pytest.mark.parametrize("kind", ["unsharded", "sharded"])
def test_a_listed_file_that_is_missing_is_refused(saved, tmp_path, kind):
    folder = _copy(saved, tmp_path, kind)
    name = "optim.safetensors" if kind == "unsharded" else "optim.json"
    (folder / name).unlink()
    _refused(folder, f"{name} is (listed in manifest.json but )?missing")


@pytest.mark.parametrize("kind", ["unsharded", "sharded"])
@pytest.mark.parametrize("name", ["optim", "train", "extra"])
def test_a_file_the_manifest_does_not_list_is_refused(saved, tmp_path, kind, name):
    """Unlisted optimizer or trainer state would be skipped silently (a fresh optimizer, step 0)."""
    folder = _copy(saved, tmp_path, kind)
    if name == "extra":
        name = "model.pt"
        (folder / name).write_bytes(b"anything")
    else:
        name = {("unsharded", "optim"): "optim.safetensors", ("unsharded", "train"): "train.json",
                ("sharded", "optim"): "optim.json", ("sharded", "train"): "train/rank0.json"}[kind, name]  # fmt: skip
        _edit_manifest(folder, lambda m: m["files"].pop(name))
    _refused(folder, f"{name} is not listed in manifest.json; the folder was altered")
    if kind == "sharded":
        with pytest.raises(CheckpointError, match="is not listed in manifest.json"):
            unshard(str(folder), str(tmp_path / "out"))
    with pytest.raises(CheckpointError, match="is not listed in manifest.json"):
        read_model_state(str(folder))


MANIFESTS = {  # manifest.json text: what the error says
    "": "manifest.json is not UTF-8 JSON",
    "{": "manifest.json is not UTF-8 JSON",
    b"\xff\xfe{}": "manifest.json is not UTF-8 JSON",
    "[]": "manifest.json: not an olmo_fn manifest",
    '{"format": "olmo_fn", "version": 1, "kind": "hf", "step": 1, "files": {}}': "kind or step",
    '{"format": "olmo_fn", "version": 1, "kind": "unsharded", "step": -1, "files": {}}': "kind or step",
    '{"format": "olmo_fn", "version": 1, "kind": "unsharded", "step": 1, "files": []}': 'no "files" object',
    '{"format": "olmo_fn", "kind": "unsharded", "step": 1, "files": {"../model.safetensors": '
    '{"size": 1, "xxh3": "0"}}}': "lists '../model.safetensors', not a path inside the checkpoint",
    '{"format": "olmo_fn", "kind": "unsharded", "step": 1, "files": {"/etc/passwd": '
    '{"size": 1, "xxh3": "0"}}}': "not a path inside the checkpoint",
    '{"format": "olmo_fn", "kind": "unsharded", "step": 1, "files": {"model.safetensors": '
    '{"size": "1", "xxh3": "0"}}}': "the entry of 'model.safetensors' is not",
    '{"format": "olmo_fn", "kind": "unsharded", "step": 1, "files": {"model.safetensors": '
    '{"size": 1, "xxh3": "0"}, "model.safetensors": {"size": 2, "xxh3": "0"}}}': "names 'model.safetensors' twice",
}


@pytest.mark.parametrize("text", MANIFESTS)
def test_a_manifest_that_does_not_parse_is_refused(saved, tmp_path, text):
    folder = _copy(saved, tmp_path)
    (folder / storage.MANIFEST).write_bytes(text if isinstance(text, bytes) else text.encode())
    message = _refused(folder, MANIFESTS[text])
    assert message.startswith(f"{folder}/manifest.json")
    with pytest.raises(CheckpointError, match=MANIFESTS[text]):
        model_config_of_checkpoint(str(folder))


@pytest.mark.parametrize(
    "case", ["duplicate tensor names", "offsets past the end", "shape and byte range differ"]
)
def test_a_lying_header_is_refused_even_when_the_manifest_agrees(saved, tmp_path, case):
    folder = _copy(saved, tmp_path)
    victim = folder / "model.safetensors"
    _corrupt(victim, case)
    _edit_manifest(folder, lambda m: m["files"].update({victim.name: storage.entry(victim.read_bytes())}))
    _refused(folder, f"{victim.name}: .*(twice|past its end|but data_offsets)")


def test_the_untouched_copies_load(saved, tmp_path):
    for kind in saved:
        load_checkpoint(str(_copy(saved, tmp_path, kind)), *fresh(CFG))
