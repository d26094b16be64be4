"""tools/generate.py: the same tokens from every checkpoint format, streaming, int8, one-line errors."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tyro
from tokenizers import Tokenizer, models, pre_tokenizers

from olmo_fn.checkpoint import load_checkpoint
from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.checkpoint.native import Content, write_native_dir
from olmo_fn.errors import OlmoFnError
from olmo_fn.generate import generate
from olmo_fn.model import Transformer
from olmo_fn.quantize import quantize_int8, relative_logit_error
from olmo_fn.sampling import SamplingConfig

from .helpers import config, random_model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import generate as tool  # noqa: E402


def _tokenizer(path: Path, size: int) -> str:
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(size)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return str(path)


def _run(capsys, *args: str) -> str:
    tool.main(*args[:2], **dict(zip(args[2::2], args[3::2], strict=True)))
    return capsys.readouterr().out


def test_every_format_streams_the_same_continuation(tmp_path, capsys, fixtures):
    cfg = config("olmo2-gqa")
    model = random_model(cfg, seed=3)
    tok = _tokenizer(tmp_path / "tok.json", cfg.vocab_size)
    write_hf_dir(str(tmp_path / "hf"), model.state_dict(), cfg)
    content = Content(model.state_dict(), None, None, {"model": dataclasses.asdict(cfg)})
    write_native_dir(str(tmp_path / "native"), content, step=1)
    prompt = "w5 w17 w3 w99"
    outputs = {kind: _run(capsys, str(tmp_path / kind), tok, "prompt", [prompt], "max_new_tokens", 12)
               for kind in ("hf", "native")}  # fmt: skip
    expected = generate(model, torch.tensor([[5, 17, 3, 99]]), max_new_tokens=12)
    text = prompt + " " + " ".join(f"w{t}" for t in expected.row(0))
    assert outputs["hf"].strip() == outputs["native"].strip() == text
    original = fixtures / "original_olmo" / "olmo2"  # written by the original OLMo code
    out = _run(capsys, str(original), tok, "ids", "5 17 3", "max_new_tokens", 6, "sampling",
               SamplingConfig(do_sample=True, top_k=5, seed=1))  # fmt: skip
    reference = Transformer(load_cfg := tool.load_model(str(original), 250).config)
    load_checkpoint(str(original), reference, None)
    sampled = generate(reference, torch.tensor([[5, 17, 3]]), max_new_tokens=6,
                       sampling=SamplingConfig(do_sample=True, top_k=5, seed=1))  # fmt: skip
    assert load_cfg.vocab_size == 250
    assert out.strip() == "w5 w17 w3 " + " ".join(f"w{t}" for t in sampled.row(0))


def test_int8_moves_the_logits_a_little(tmp_path, capsys):
    pytest.importorskip("torchao")
    cfg = config("olmo2-tied")
    model = random_model(cfg, seed=4)
    ids = torch.tensor([[3, 9, 27, 81, 200]])
    with torch.no_grad():
        reference = model(ids)
        quantize_int8(model)
        quantized = model(ids)
    error = relative_logit_error(reference, quantized)
    assert 0 < error < 0.05
    assert type(model.blocks[0].mlp.up_proj.weight).__name__ != "Parameter"  # really quantised
    assert len(generate(model, ids, max_new_tokens=4, stop=None).row(0)) >= 1


def test_quantize_flag_reports_the_error(tmp_path, capsys):
    cfg = config("olmo1-clipqkv")
    tok = _tokenizer(tmp_path / "tok.json", cfg.vocab_size)
    write_hf_dir(str(tmp_path / "hf"), random_model(cfg).state_dict(), cfg)
    tool.main(str(tmp_path / "hf"), tok, prompt=["w1 w2 w3"], max_new_tokens=3, quantize="int8")
    err = capsys.readouterr().err
    assert "[int8] relative logit error against fp32" in err
    assert 0 < float(err.split(":")[-1]) < 0.05


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path):
    tok = _tokenizer(tmp_path / "tok.json", 400)  # more ids than the model's 250
    olmo1 = str(ROOT / "tests/fixtures/original_olmo/olmo1")
    cases = {
        "not a checkpoint": [str(tmp_path / "missing"), tok, "--prompt", "w1"],
        "tokenizer": [str(tmp_path), str(tmp_path / "none.json"), "--prompt", "w1"],
        "no prompt": [olmo1, tok],
        "max_sequence_length": [olmo1, tok, "--ids", "1 2", "--max-new-tokens", "100"],
        "outside the model's vocabulary": [olmo1, tok, "--ids", "1 300", "--max-new-tokens", "4"],
    }
    for message, args in cases.items():
        with pytest.raises(OlmoFnError, match=message):
            tyro.cli(tool.main, args=args)
    run = subprocess.run([sys.executable, str(ROOT / "tools/generate.py"), *args], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 1 and len(lines) == 1 and message in lines[0], run.stderr[-2000:]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tyro.cli(tool.main, args=["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in ("--prompt", "--prompts-file", "--top-p", "--quantize", "--stop", "--compile"):
        assert option in out


def test_prompts_come_from_flags_a_file_and_ids(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("first prompt\n\nsecond one\n", encoding="utf-8")
    assert tool.read_prompts(["cli"], str(path), "4, 5 6") == ["cli", "first prompt", "second one", [4, 5, 6]]
    with pytest.raises(OlmoFnError, match="integers"):
        tool.read_prompts([], None, "4 x")
    with pytest.raises(OlmoFnError, match="no such file"):
        tool.read_prompts([], str(tmp_path / "none.txt"), None)


def test_a_closed_pipe_is_one_line_and_status_141(tmp_path):
    tok = _tokenizer(tmp_path / "tok.json", 250)
    olmo1 = ROOT / "tests/fixtures/original_olmo/olmo1"
    command = f"{sys.executable} tools/generate.py {olmo1} {tok} --ids '1 2' --max-new-tokens 60 | head -c 2"
    run = subprocess.run(["bash", "-c", command + '; echo "status=${PIPESTATUS[0]}" >&2'], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in run.stderr and "BrokenPipeError" not in run.stderr, run.stderr
    assert "stopped: standard output was closed" in run.stderr and "status=141" in run.stderr, run.stderr
