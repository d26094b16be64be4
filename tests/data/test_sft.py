"""SFT preparation follows reference §10 exactly: EOS first, role headers, only assistant replies labelled."""

import json

import numpy as np
import pytest

from olmo_fn.config import DataConfig
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.sft import prepare_sft_data, sft_examples
from olmo_fn.errors import DataError
from tests.data.conftest import WORDS, word_tokenizer

ID = {w: i for i, w in enumerate(WORDS)}
EOS, PAD, NL = 0, 1, ID["\n"]


def header(role):
    return [ID["<|"], ID[role], ID["|>"], NL]


def chat(*turns):
    return [{"role": role, "content": content} for role, content in turns]


def test_one_example_token_by_token():
    messages = chat(
        ("user", "  hi there \n"),
        ("assistant", "hello world"),
        ("user", "how are you"),
        ("assistant", "fine"),
    )
    [(ids, mask)] = sft_examples([messages], word_tokenizer(), seq_len=40, eos_token_id=EOS, pad_token_id=PAD)
    expected = (
        [(EOS, False)]
        + [(t, False) for t in header("user") + [ID["hi"], ID["there"], NL]]  # user content stripped + "\n"
        + [(t, False) for t in header("assistant")]
        + [(ID["hello"], True), (ID["world"], True), (EOS, True), (NL, False)]  # EOS labelled, "\n" not
        + [(t, False) for t in header("user") + [ID["how"], ID["are"], ID["you"], NL]]
        + [(t, False) for t in header("assistant")]
        + [(ID["fine"], True), (EOS, True), (NL, False)]
    )
    assert len(expected) == 31
    assert ids.tolist() == [t for t, _ in expected] + [PAD] * 9
    assert mask.tolist() == [m for _, m in expected] + [False] * 9


def test_truncation_and_examples_without_labels():
    long = chat(("user", "hello world"), ("assistant", "the quick brown fox"))
    cut = chat(("system", "the quick brown fox jumps over"), ("assistant", "hello"))
    examples = sft_examples([long, cut], word_tokenizer(), seq_len=14, eos_token_id=EOS, pad_token_id=PAD)
    ids, mask = examples[0]
    assert ids.tolist() == [
        EOS,
        *header("user"),
        ID["hello"],
        ID["world"],
        NL,
        *header("assistant"),
        ID["the"],
        ID["quick"],
    ]
    assert mask.tolist() == [False] * 12 + [True, True]  # cut in the middle of the reply
    assert examples[1] is None  # the reply was cut off entirely: dropped


def test_files_are_the_examples_back_to_back(tmp_path, word_tokenizer_json):
    rows = [
        {"messages": chat(("user", "hi"), ("assistant", "hello world"))},
        {"messages": chat(("user", "the quick brown fox jumps over the lazy dog"), ("assistant", "hi"))},
        {"messages": chat(("user", "how are you"), ("assistant", "fine thanks"))},
    ]
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft"
    manifest = prepare_sft_data([str(src)], str(word_tokenizer_json), str(out), seq_len=16, progress=False)
    assert (manifest["examples"], manifest["dropped_without_labels"], manifest["dtype"]) == (2, 1, "uint16")
    expected = sft_examples(
        [rows[0]["messages"], rows[2]["messages"]],
        word_tokenizer(),
        seq_len=16,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    ids = np.fromfile(out / "input_ids.npy", dtype=np.uint16)
    mask = np.fromfile(out / "label_mask.npy", dtype=np.bool_)
    assert ids.tolist() == np.concatenate([e[0] for e in expected]).tolist()
    assert mask.tolist() == np.concatenate([e[1] for e in expected]).tolist()
    assert manifest["label_tokens"] == int(mask.sum()) == 3 + 3  # "hello world" EOS, "fine thanks" EOS (cut)
    cfg = DataConfig(paths=[str(out / "input_ids.npy")], label_mask_paths=[str(out / "label_mask.npy")])
    ds = build_token_dataset(cfg, seq_len=16, vocab_size=len(WORDS))
    assert len(ds) == 2 and ds[1]["label_mask"].tolist() == expected[1][1].tolist()
    assert sorted(p.name for p in out.iterdir()) == ["input_ids.npy", "label_mask.npy", "manifest.json"]


def test_records_that_are_not_chats_name_the_file(tmp_path, word_tokenizer_json):
    src = tmp_path / "plain.jsonl"
    src.write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(DataError, match=r"plain\.jsonl: record 0 has no 'messages' list"):
        prepare_sft_data([str(src)], str(word_tokenizer_json), str(tmp_path / "out"), progress=False)
    assert not list((tmp_path / "out").glob("*.npy*"))  # nothing half-written
