"""tools/convert_to_hf.py and tools/convert_from_hf.py against transformers' own loaders (offline)."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer

from olmo_fn.checkpoint import detect_kind, load_checkpoint, model_config_of_checkpoint, save_checkpoint
from olmo_fn.errors import OlmoFnError
from olmo_fn.model import Transformer
from tests.checkpoint.helpers import config_dict, tiny_cfg, trained, trainer_state

ROOT = Path(__file__).resolve().parents[2]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _tokenizer(path: Path) -> str:
    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=["<|endoftext|>", "<|padding|>", "<|unk|>"])
    tok.train_from_iterator(["hello world, a tiny tokenizer for olmo tests"] * 20, trainer)
    tok.save(str(path))
    return str(path)


def _hf_logits(folder, tokens):
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return type(hf).__name__, hf(tokens).logits


def test_native_and_sharded_to_hf_with_tokenizer_and_back(tmp_path):
    cfg = tiny_cfg(eos_token_id=0, pad_token_id=1)
    model, opt = trained(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens)
    native = save_checkpoint(
        str(tmp_path / "run"), 2, model, opt, trainer_state(), config_dict(cfg), sharded=False, keep=1
    )
    sharded = save_checkpoint(
        str(tmp_path / "run"), 2, model, opt, trainer_state(), config_dict(cfg), sharded=True, keep=1
    )
    tok = _tokenizer(tmp_path / "tok.json")
    out = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "tools/convert_to_hf.py", "--input_dir", native, "--output_dir", str(out),
         "--tokenizer_json_path", tok],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    name, logits = _hf_logits(out, tokens)
    assert name == "Olmo2ForCausalLM" and (logits - ours).abs().max().item() < 1e-5
    config = json.loads((out / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 500_000.0 and config["num_key_value_heads"] == 2
    hf_tok = AutoTokenizer.from_pretrained(out)
    assert (hf_tok.eos_token_id, hf_tok.pad_token_id) == (0, 1) and hf_tok.eos_token == "<|endoftext|>"

    _tool("convert_to_hf")(input_dir=sharded, output_dir=str(tmp_path / "hf2"))
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "hf2" / "model.safetensors")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)

    # HF -> olmo_fn -> HF: identical tensors and config; the olmo_fn model gives the same logits
    back = str(tmp_path / "back")
    _tool("convert_from_hf")(input_dir=str(out), output_dir=back)
    assert detect_kind(back) == "unsharded"  # HF configs hold the padded vocab only, and no init cutoff:
    assert model_config_of_checkpoint(back) == dataclasses.replace(
        cfg, vocab_size=128, init_cutoff_factor=3.0
    )
    _tool("convert_to_hf")(input_dir=back, output_dir=str(tmp_path / "hf3"))
    c = load_file(tmp_path / "hf3" / "model.safetensors")
    assert sorted(a) == sorted(c) and all(torch.equal(a[k], c[k]) for k in a)
    assert json.loads((tmp_path / "hf3" / "config.json").read_text()) == config
    model2 = Transformer(model_config_of_checkpoint(str(out)))
    assert load_checkpoint(str(out), model2, None).kind == "hf"
    with torch.no_grad():
        assert (model2(tokens) - ours).abs().max().item() < 1e-5


def test_original_olmo1_folder_to_hf(fixtures, tmp_path):
    _tool("convert_to_hf")(input_dir=str(fixtures / "original_olmo" / "olmo1"), output_dir=str(tmp_path))
    tokens = torch.from_numpy(np.load(fixtures / "original_olmo" / "olmo1.tokens.npy"))
    expected = torch.from_numpy(np.load(fixtures / "original_olmo" / "olmo1.logits.npy"))
    name, logits = _hf_logits(tmp_path, tokens)
    assert name == "OlmoForCausalLM" and (logits - expected).abs().max().item() < 1e-5
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["clip_qkv"], config["eos_token_id"], config["pad_token_id"]) == (2.5, 249, 1)


def test_tool_errors_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/convert_from_hf.py", "--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("tool", ["unshard", "convert_to_hf", "convert_from_hf", "download_checkpoints"])
def test_help(tool):
    result = subprocess.run(
        [sys.executable, f"tools/{tool}.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage" in result.stdout


def test_convert_to_hf_never_replaces_what_it_was_not_told_to(tmp_path):
    cfg = tiny_cfg(eos_token_id=0, pad_token_id=1)
    model, opt = trained(cfg)
    native = save_checkpoint(
        str(tmp_path / "run"), 2, model, opt, trainer_state(), config_dict(cfg), sharded=False, keep=1
    )
    convert = _tool("convert_to_hf")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    (tmp_path / "a-file").write_text("x")
    for output, says in [(existing, "already exists; pass --overwrite"), (tmp_path / "a-file", "is a file"),
                         (Path(native), "would replace the input")]:  # fmt: skip
        with pytest.raises(OlmoFnError, match=says):
            convert(input_dir=native, output_dir=str(output))
    assert (existing / "mine.txt").read_text() == "keep me" and (tmp_path / "a-file").read_text() == "x"
    with pytest.raises(OlmoFnError, match="not a tokenizers JSON"):  # fails mid-write: nothing published
        convert(
            input_dir=native, output_dir=str(tmp_path / "new"), tokenizer_json_path=str(tmp_path / "a-file")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "existing", "run"]
    convert(input_dir=native, output_dir=str(existing), overwrite=True)
    assert sorted(p.name for p in existing.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]


def test_convert_from_hf_and_unshard_publish_whole_outputs_and_replace_only_when_told(tmp_path):
    cfg = tiny_cfg(eos_token_id=0, pad_token_id=1)
    model, opt = trained(cfg)
    sharded = save_checkpoint(
        str(tmp_path / "run"), 2, model, opt, trainer_state(), config_dict(cfg), sharded=True, keep=1
    )
    hf = tmp_path / "hf"
    _tool("convert_to_hf")(input_dir=sharded, output_dir=str(hf))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    (tmp_path / "a-file").write_text("x")
    runs = {
        "convert_from_hf": lambda out, **kw: _tool("convert_from_hf")(
            input_dir=str(hf), output_dir=str(out), **kw
        ),
        "unshard": lambda out, **kw: _tool("unshard")(sharded, str(out), **kw),
    }
    for name, run in runs.items():
        for output, says in [
            (existing, "already exists; pass --overwrite"),
            (tmp_path / "a-file", "is a file"),
        ]:
            with pytest.raises(OlmoFnError, match=says):
                run(output)
        assert (existing / "mine.txt").read_text() == "keep me" and (tmp_path / "a-file").read_text() == "x"
        run(tmp_path / name)
        assert detect_kind(str(tmp_path / name)) == "unsharded", name
        assert not [p.name for p in tmp_path.iterdir() if "-tmp-" in p.name]  # nothing left half-written
    with pytest.raises(OlmoFnError, match="would replace the input"):
        runs["unshard"](tmp_path / "run")
    runs["unshard"](existing, overwrite=True)
    assert (
        "mine.txt" not in {p.name for p in existing.iterdir()} and detect_kind(str(existing)) == "unsharded"
    )
