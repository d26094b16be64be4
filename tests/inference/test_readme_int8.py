"""The README's int8 route for a Hugging Face folder (transformers' TorchAoConfig), run as written on a tiny
converted model; and quiet_third_party() before it silences torchao's import noise, as the README says."""

import re
import subprocess
import sys
from pathlib import Path

import torch

from olmo_fn.checkpoint.hf_dir import write_hf_dir

from .helpers import config, random_model

ROOT = Path(__file__).resolve().parents[2]


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    (block,) = [b for b in blocks if "TorchAoConfig" in b]
    return block


def test_the_readme_int8_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    cfg = config("olmo2-gqa")
    write_hf_dir(str(tmp_path / "hf-tiny"), random_model(cfg).state_dict(), cfg)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(_snippet(), names)  # noqa: S102 (the README's own code)
    printed = "".join(capsys.readouterr().out.split())
    assert re.fullmatch(r"tensor\(\[\[1,2,3(,\d+){8}\]\]\)", printed), printed
    q_proj = names["model"].model.layers[0].self_attn.q_proj.weight
    assert type(q_proj).__name__ == "Int8Tensor"
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained("hf-tiny")
    ids = torch.tensor([[5, 17, 3, 99]])
    with torch.no_grad():
        exact, approx = reference(ids).logits, names["model"](ids).logits
    assert 0 < ((approx - exact).norm() / exact.norm()).item() < 0.05


def test_quiet_third_party_silences_the_snippets_import_noise(tmp_path):
    cfg = config("olmo2-gqa")
    write_hf_dir(str(tmp_path / "hf-tiny"), random_model(cfg).state_dict(), cfg)
    code = "from olmo_fn.launch import quiet_third_party\nquiet_third_party()\n" + _snippet()
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "Failed to load" not in run.stderr and "KernelPreference" not in run.stderr, run.stderr
    assert "".join(run.stdout.split()).startswith("tensor([[1,2,3,")
