"""Checkpoints from somewhere else may carry a pickle that runs code when loaded. Each place a pickle can hide
(an original OLMo folder's model.pt, optim.pt and train.pt; a Hugging Face pytorch_model.bin; DCP's
.metadata of a sharded checkpoint whose manifest was rewritten to match) holds a payload that would create
a marker file: every load is refused with a clear error and the marker never appears."""

import dataclasses
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint, storage
from olmo_fn.errors import OlmoFnError
from olmo_fn.model import Transformer
from olmo_fn.train import train
from tests.train.conftest import tiny_config

ORIGINAL = Path(__file__).resolve().parents[1] / "fixtures" / "original_olmo" / "olmo1"


class _Payload:
    """Unpickling this calls os.system (creating the marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _load(path: Path, with_optimizer: bool = True) -> None:
    model = Transformer(model_config_of_checkpoint(str(path)))
    optimizer = torch.optim.AdamW(model.parameters()) if with_optimizer else None
    load_checkpoint(str(path), model, optimizer)


@pytest.mark.parametrize("name", ["model.pt", "optim.pt", "train.pt"])
def test_a_payload_in_an_original_folder_is_refused(tmp_path, name):
    folder = tmp_path / "ckpt"
    shutil.copytree(ORIGINAL, folder)
    marker = tmp_path / "ran"
    torch.save({"state": _Payload(marker)}, folder / name)
    with pytest.raises(OlmoFnError, match=name.replace(".", r"\.") + ": refused to load"):
        _load(folder)
    assert not marker.exists()


def test_a_payload_in_a_hugging_face_bin_is_refused(tmp_path):
    import transformers  # the folder is what transformers writes, with the weights as pickle

    from olmo_fn.checkpoint.hf_dir import write_hf_dir

    cfg = model_config_of_checkpoint(str(ORIGINAL))
    folder, marker = tmp_path / "hf", tmp_path / "ran"
    write_hf_dir(str(folder), Transformer(cfg).state_dict(), cfg)
    (folder / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    assert transformers.__version__
    with pytest.raises(OlmoFnError, match=r"pytorch_model\.bin: refused to load .*GLOBAL posix\.system"):
        _load(folder, with_optimizer=False)
    assert not marker.exists()


def test_a_payload_in_dcp_metadata_is_refused_even_when_the_manifest_agrees(tmp_path):
    cfg = tiny_config(tmp_path, max_duration="1", save_interval=1, save_num_unsharded_checkpoints_to_keep=0,
                      eval_interval=None)  # fmt: skip
    checkpoint = Path(train(cfg).checkpoint)
    marker = tmp_path / "ran"
    metadata = next(checkpoint.rglob(".metadata"))
    metadata.write_bytes(pickle.dumps(_Payload(marker)))  # the attacker rewrites the manifest to match too
    manifest = json.loads((checkpoint / storage.MANIFEST).read_text())
    manifest["files"][str(metadata.relative_to(checkpoint))] = storage.entry(metadata.read_bytes())
    (checkpoint / storage.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(OlmoFnError, match="not allowed to load"):
        load_checkpoint(str(checkpoint), Transformer(dataclasses.replace(cfg.model)), None)
    assert not marker.exists()
