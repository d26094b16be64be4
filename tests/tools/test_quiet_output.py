"""No third-party import noise on stderr (torchao's "Failed to load ..._C_*.so", torch's "<enum
'KernelPreference'> is an Enum subclass" line), and several prompts' outputs apart."""

import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

from olmo_fn.checkpoint.hf_dir import write_hf_dir
from tests.inference.helpers import config, random_model

ROOT = Path(__file__).resolve().parents[2]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_int8_generation_of_two_prompts_is_quiet_and_separated(tmp_path):
    cfg = config("olmo1-clipqkv")
    write_hf_dir(str(tmp_path / "hf"), random_model(cfg).state_dict(), cfg)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(cfg.vocab_size)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tok.json"))
    args = [str(tmp_path / "hf"), str(tmp_path / "tok.json"), "--prompt", "w1 w2", "--prompt", "w3"]
    run = _python("tools/generate.py", *args, "--max-new-tokens", "3", "--quantize", "int8")
    assert run.returncode == 0, run.stderr
    (line,) = run.stderr.splitlines()  # nothing but the tool's own report
    assert line.startswith("[int8] relative logit error against fp32 on the first prompt: ")
    out = run.stdout.splitlines()
    assert [out[0], out[2]] == ["=== prompt 1 of 2 ===", "=== prompt 2 of 2 ==="] and len(out) == 4
    assert out[1].startswith("w1 w2 w") and out[3].startswith("w3 w")
