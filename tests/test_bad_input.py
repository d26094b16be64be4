"""The README's bad-input table, row by row: each input gives one line naming the thing and the fix, a
non-zero exit, no traceback, and leaves the save folder as it was (the tiny recipe, run as its CLI runs,
in this process). Rows about tools are tested next to them (the table names where)."""

import contextlib
from pathlib import Path

import numpy as np
import pytest

from olmo_fn.launch import run_cli
from olmo_fn.recipes import load_recipe
from tests.checkpoint import servers
from tests.checkpoint.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.n_layers=1", "--model.d_model=64", "--model.n_heads=2", "--model.mlp_hidden_size=128",
        "--model.max_sequence_length=64", "--global_train_batch_size=4", "--device_train_microbatch_size=4",
        "--tracking.no-aim", "--tracking.progress-bar=False", "--no-eval_on_load", "--max_duration=2",
        "--no-save_overwrite"]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    rng.integers(0, 4096, size=64 * 40).astype(np.uint16).tofile(d / "ok.npy")
    (d / "truncated.npy").write_bytes((d / "ok.npy").read_bytes()[:-1])
    rng.integers(0, 60000, size=64 * 40).astype(np.uint16).tofile(d / "big-ids.npy")
    np.ones(64 * 20, dtype=np.bool_).tofile(d / "short-mask.npy")
    from tokenizers import Tokenizer, models  # 5,000 ids for a model of 4,096

    Tokenizer(models.WordLevel({f"w{i}": i for i in range(5000)}, unk_token="w0")).save(
        str(d / "tokenizer.json")
    )
    recipe = load_recipe("olmo_tiny")
    for name in ("existing", "corrupt"):  # a checkpoint of the same shrunk recipe, then a corrupt copy
        argv = [*TINY, "--max_duration=1", f"--data.paths=[{d / 'ok.npy'}]", f"--save_folder={d / name}"]
        run_cli(recipe.config(), None, recipe.run, argv=argv)
    model = d / "corrupt" / "step1-unsharded" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    return {"d": str(d), "ok": str(d / "ok.npy"), "checkpoint": str(d / "existing" / "step1-unsharded"),
            "corrupt": str(model.parent), "existing": str(d / "existing"), "tokenizer": str(d / "tokenizer.json")}  # fmt: skip


ROWS = {  # what: (flags, the line says)
    "a truncated token file": (["--data.paths=[{d}/truncated.npy]"], "is not a multiple of 2 (uint16); the file is truncated"),
    "token ids >= the vocabulary": (["--data.paths=[{d}/big-ids.npy]"], "is not below vocab_size 4096"),
    "the wrong dtype": (["--data.paths=[{ok}]", "--data.memmap_dtype=uint32"], "data.memmap_dtype is wrong"),
    "a label mask of the wrong length": (["--data.paths=[{ok}]", "--data.label_mask_paths=[{d}/short-mask.npy]"],
                                         "label mask holds 1280 entries but"),
    "a missing path": (["--data.paths=[{d}/none.npy]"], "none.npy: file not found; check the path"),
    "a model that does not fit the checkpoint": (["--data.paths=[{ok}]", "--load_path={checkpoint}", "--model.d_model=128"],
                                                 "load_path: the checkpoint's model.d_model is 64 but the run's is 128"),
    "a corrupt checkpoint": (["--data.paths=[{ok}]", "--load_path={corrupt}"], "differs from the manifest's"),
    "a missing remote token file": (["--data.paths=[{url}/none.npy]"], "none.npy: file not found; check the path"),
    "a remote path that times out": (["--data.paths=[{stalled}/ok.npy]"], "ok.npy: failed 2 times (Timeout on reading data from socket); check the connection"),
    "a 404 on a remote path": (["--data.paths=[{ok}]", "--load_path={url}/none/"], "not a checkpoint olmo_fn recognises"),
    "an existing save folder without --save_overwrite": (["--data.paths=[{ok}]", "--save_folder={existing}"],
                                                         "already holds checkpoints"),
    "a non-finite loss": (["--data.paths=[{ok}]", "--optimizer.learning_rate=1e30", "--max_duration=6"],
                          "non-finite training step"),
    "a tokenizer that does not fit the model": (["--data.paths=[{ok}]", "--tokenizer.identifier={tokenizer}"],
                                                "tokenizer.identifier:"),
    "an unknown flag": (["--data.paths=[{ok}]", "--no_such_flag=1"], "Unrecognized options: --no_such_flag=1"),
}  # fmt: skip


@contextlib.contextmanager
def stalled_server():
    """A server that accepts connections and never answers, behind short client timeouts and 2 tries."""
    import aiohttp
    import fsspec

    with pytest.MonkeyPatch.context() as patch, FaultProxy("http://127.0.0.1:9", seed=0, rate=1.0,
                                                           target=10**9, kinds=("timeout",)) as proxy:  # fmt: skip
        patch.setenv("OLMO_FN_REMOTE_ATTEMPTS", "2")
        patch.setenv("OLMO_FN_REMOTE_BACKOFF", "0.01")
        patch.setitem(
            fsspec.config.conf, "http", {"client_kwargs": {"timeout": aiohttp.ClientTimeout(sock_read=0.3)}}
        )
        yield proxy.url


@pytest.mark.parametrize("what", list(ROWS))
def test_bad_input_is_one_line_a_nonzero_exit_and_nothing_overwritten(what, files, tmp_path, capsys):
    flags, says = ROWS[what]
    recipe = load_recipe("olmo_tiny")
    (tmp_path / "served").mkdir()
    with servers.http_server(tmp_path / "served") as server, stalled_server() as stalled:
        argv = [
            *TINY,
            f"--save_folder={tmp_path / 'run'}",
            *(f.format(**files, url=server.url, stalled=stalled) for f in flags),
        ]
        before = sorted(p.name for p in Path(files["existing"]).iterdir())
        with pytest.raises(SystemExit) as stop:
            run_cli(recipe.config(), None, recipe.run, argv=argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert stop.value.code != 0 and len(lines) == 1 and says in lines[0], err[-2000:]
    assert sorted(p.name for p in Path(files["existing"]).iterdir()) == before
    assert "error:" in err and "Traceback" not in err


def test_every_row_is_in_the_readme_table():
    text = (ROOT / "README.md").read_text()
    table = text.split("### Bad input\n", 1)[1].split("\n#", 1)[0]
    for what in ROWS:
        assert f"| {what} |" in table, what
