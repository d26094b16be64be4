"""The embedded default corpus: real text from the installed Python, a 4096-token BPE, disjoint splits."""

import json

import numpy as np
from tokenizers import Tokenizer

from olmo_fn.config import DataConfig
from olmo_fn.data.corpus import EOS_TOKEN_ID, PAD_TOKEN_ID, corpus_documents, default_corpus, is_validation
from olmo_fn.data.memmap import build_token_dataset


def test_default_corpus_is_built_once_and_cached():
    corpus = default_corpus()  # the shared cache (.cache/olmo_fn or $OLMO_FN_CACHE): built on first use
    manifest = json.loads(open(corpus.manifest).read())
    tok = Tokenizer.from_file(corpus.tokenizer_json)
    assert tok.get_vocab_size() == corpus.vocab_size == 4096
    assert (
        (tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|padding|>"))
        == (EOS_TOKEN_ID, PAD_TOKEN_ID)
        == (0, 1)
    )
    assert manifest["license"].startswith("Python Software Foundation License")
    train = np.concatenate([np.fromfile(p, dtype=np.uint16) for p in corpus.train_paths])
    valid = np.concatenate([np.fromfile(p, dtype=np.uint16) for p in corpus.valid_paths])
    assert (
        len(train) == manifest["train"]["tokens"] > 300_000
        and len(valid) == manifest["valid"]["tokens"] > 5_000
    )
    assert train.max() < 4096 and train[-1] == EOS_TOKEN_ID
    assert (train == EOS_TOKEN_ID).sum() == manifest["train"]["documents"]  # one EOS per document
    assert "Return" in tok.decode(train[:5000].tolist())  # English prose
    again = default_corpus()
    assert again == corpus
    ds = build_token_dataset(DataConfig(paths=corpus.valid_paths), seq_len=256, vocab_size=corpus.vocab_size)
    assert len(ds) == len(valid) // 256


def test_validation_documents_are_not_in_training():
    docs = corpus_documents()
    names = [name for name, _ in docs]
    assert len(names) == len(set(names)) > 400
    valid = {name for name in names if is_validation(name, 0.05)}
    train_texts = {text for name, text in docs if name not in valid}
    assert 10 < len(valid) < 60
    assert not any(text in train_texts for name, text in docs if name in valid)
    manifest = json.loads(open(default_corpus().manifest).read())
    assert set(manifest["valid_documents"]) == valid
