"""Preparation writes the original's token format: EOS after every document, uint16/uint32, a manifest."""

import hashlib
import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from olmo_fn.config import DataConfig
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.prepare import prepare_token_files, tokenize_documents, train_bpe_tokenizer
from olmo_fn.errors import ConfigError, DataError
from tests.data.conftest import WORDS

ID = {w: i for i, w in enumerate(WORDS)}


def ids(text):
    return [ID[w] for w in text.split()]


def test_text_jsonl_parquet_and_saved_datasets_become_token_files(tmp_path, word_tokenizer_json):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello world\n\nthe quick brown fox")
    (src / "b.jsonl").write_text(
        json.dumps({"text": "jumps over"}) + "\n\n" + json.dumps({"text": "lazy dog"}) + "\n"
    )
    pq.write_table(pa.table({"text": ["hi there", "how are you"]}), src / "c.parquet")
    datasets.Dataset.from_dict({"text": ["fine thanks"]}).save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "out"
    manifest = prepare_token_files(
        [str(src), str(tmp_path / "saved")],
        str(word_tokenizer_json),
        str(out),
        text_unit="paragraph",
        progress=False,
    )
    docs = [
        "hello world",
        "the quick brown fox",
        "jumps over",
        "lazy dog",
        "hi there",
        "how are you",
        "fine thanks",
    ]
    expected = [t for d in docs for t in [*ids(d), 0]]  # EOS (id 0) after every document
    assert np.fromfile(out / "part-00000.npy", dtype=np.uint16).tolist() == expected
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert (manifest["documents"], manifest["tokens"], manifest["dtype"]) == (7, len(expected), "uint16")
    assert manifest["tokenizer_sha256"] == hashlib.sha256(word_tokenizer_json.read_bytes()).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "part-00000.npy"]


def test_output_is_split_between_documents_and_readable_as_a_dataset(tmp_path, word_tokenizer_json):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"body": "the quick brown fox"}) + "\n" for _ in range(5)))
    manifest = prepare_token_files(
        [str(src)],
        str(word_tokenizer_json),
        str(tmp_path / "out"),
        text_field="body",
        max_tokens_per_file=12,
        progress=False,
    )
    assert [f["tokens"] for f in manifest["files"]] == [10, 10, 5]  # two 5-token documents fit in 12
    ds = build_token_dataset(
        DataConfig(paths=[f["path"] for f in manifest["files"]]), seq_len=5, vocab_size=25
    )
    assert len(ds) == 5 and ds[4]["input_ids"].tolist() == ids("the quick brown fox") + [0]


def test_a_large_vocabulary_gives_uint32(tmp_path):
    vocab = {"<|endoftext|>": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(70_000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    summary = tokenize_documents(["w69999 w5"], tok, str(tmp_path), eos_token_id=0, progress=False)
    assert summary["dtype"] == "uint32"
    assert np.fromfile(tmp_path / "part-00000.npy", dtype=np.uint32).tolist() == [70_001, 7, 0]


def test_a_failure_leaves_no_half_written_file(tmp_path, word_tokenizer_json):
    def documents():
        yield "hello world"
        raise RuntimeError("input broke")

    tok = Tokenizer.from_file(str(word_tokenizer_json))
    with pytest.raises(RuntimeError, match="input broke"):
        tokenize_documents(documents(), tok, str(tmp_path), eos_token_id=0, batch_size=1, progress=False)
    assert list(tmp_path.iterdir()) == [word_tokenizer_json]


def test_existing_outputs_are_not_overwritten_without_asking(tmp_path, word_tokenizer_json):
    src = tmp_path / "a.txt"
    src.write_text("hello world")
    out = tmp_path / "out"
    prepare_token_files([str(src)], str(word_tokenizer_json), str(out), progress=False)
    before = (out / "part-00000.npy").read_bytes()
    src.write_text("lazy dog")
    with pytest.raises(ConfigError, match="already holds .*pass --overwrite"):
        prepare_token_files([str(src)], str(word_tokenizer_json), str(out), progress=False)
    assert (out / "part-00000.npy").read_bytes() == before
    prepare_token_files([str(src)], str(word_tokenizer_json), str(out), overwrite=True, progress=False)
    assert np.fromfile(out / "part-00000.npy", dtype=np.uint16).tolist() == ids("lazy dog") + [0]


def test_bad_inputs_name_the_file(tmp_path, word_tokenizer_json):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2 is not JSON"):
        prepare_token_files([str(bad)], str(word_tokenizer_json), str(tmp_path / "o1"), progress=False)
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"body": "hi"}\n')
    with pytest.raises(DataError, match=r"nofield\.jsonl: record 0 has no field 'text'"):
        prepare_token_files([str(nofield)], str(word_tokenizer_json), str(tmp_path / "o2"), progress=False)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt: not UTF-8 text"):
        prepare_token_files([str(latin)], str(word_tokenizer_json), str(tmp_path / "o6"), progress=False)
    with pytest.raises(DataError, match=r"missing\.txt: input not found"):
        prepare_token_files([str(tmp_path / "missing.txt")], str(word_tokenizer_json), str(tmp_path / "o3"))
    with pytest.raises(DataError, match=r"nope\.json: tokenizer file not found"):
        prepare_token_files([str(bad)], str(tmp_path / "nope.json"), str(tmp_path / "o4"))
    with pytest.raises(ConfigError, match="no eos token '<eos>'"):
        prepare_token_files([str(bad)], str(word_tokenizer_json), str(tmp_path / "o5"), eos_token="<eos>")


def test_bpe_training_puts_the_special_tokens_first_and_round_trips():
    text = ["The quick brown fox jumps over the lazy dog. " * 20, "Ünïcödé text, too: 1 + 1 = 2."]
    tok = train_bpe_tokenizer(text, 300)
    assert 258 < tok.get_vocab_size() <= 300  # 256 bytes + 2 specials + merges (as many as the text has)
    assert (tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|padding|>")) == (0, 1)
    for t in text:
        assert tok.decode(tok.encode(t).ids) == t
    assert tok.encode("<|endoftext|>").ids == [0]


def test_inputs_and_outputs_may_be_fsspec_urls(word_tokenizer_json):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/olmo_fn_test/in/docs/a.jsonl", (json.dumps({"text": "hello world"}) + "\n").encode())
    fs.pipe("/olmo_fn_test/tok.json", word_tokenizer_json.read_bytes())
    try:
        manifest = prepare_token_files(
            ["memory://olmo_fn_test/in/docs"],
            "memory://olmo_fn_test/tok.json",
            "memory://olmo_fn_test/out",
            progress=False,
        )
        assert manifest["inputs"] == ["memory:///olmo_fn_test/in/docs/a.jsonl"]
        tokens = np.frombuffer(fs.cat("/olmo_fn_test/out/part-00000.npy"), np.uint16)
        assert tokens.tolist() == ids("hello world") + [0]
        assert json.loads(fs.cat("/olmo_fn_test/out/manifest.json"))["tokens"] == 3
        written = sorted(fs.ls("/olmo_fn_test/out", detail=False))
        assert written == ["/olmo_fn_test/out/manifest.json", "/olmo_fn_test/out/part-00000.npy"]
    finally:
        fs.rm("/olmo_fn_test", recursive=True)
