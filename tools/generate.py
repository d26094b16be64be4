"""Generate text from any checkpoint olmo_fn reads (native, sharded, original OLMo, Hugging Face folder).

    python tools/generate.py CHECKPOINT TOKENIZER_JSON --prompt "Language models are" --max-new-tokens 40
    python tools/generate.py CHECKPOINT TOKENIZER_JSON --prompts-file prompts.txt --do-sample --top-p 0.9

Each prompt's continuation is printed (streamed) as the tokens come, after a line "=== prompt K of N ===" when
there are several prompts; diagnostics go to stderr.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Annotated, Literal

import torch
import tyro

from olmo_fn.errors import ConfigError, DataError
from olmo_fn.launch import run_tool
from olmo_fn.sampling import SamplingConfig

GREEDY = SamplingConfig()


def read_prompts(prompt: list[str], prompts_file: str | None, ids: str | None) -> list[str | list[int]]:
    """Prompts from --prompt, then one per non-empty line of --prompts-file, then --ids (token ids)."""
    prompts: list[str | list[int]] = list(prompt)
    if prompts_file is not None:
        if not os.path.isfile(prompts_file):
            raise ConfigError(f"--prompts-file {prompts_file}: no such file")
        with open(prompts_file, encoding="utf-8") as f:
            prompts += [line.rstrip("\n") for line in f if line.strip()]
    if ids is not None:
        try:
            prompts.append([int(t) for t in ids.replace(",", " ").split()])
        except ValueError as e:
            raise ConfigError(f"--ids {ids!r}: expected integers separated by spaces or commas") from e
    if not prompts:
        raise ConfigError("no prompt: give --prompt TEXT, --prompts-file FILE or --ids '1 2 3'")
    return prompts


def load_tokenizer(path: str):
    """A tokenizers.Tokenizer from a JSON file, with a one-line error when it cannot be read."""
    from tokenizers import Tokenizer

    if not os.path.isfile(path):
        raise ConfigError(f"tokenizer {path}: no such file (expected a tokenizers JSON file)")
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises its own Exception type
        raise ConfigError(f"tokenizer {path}: not a tokenizers JSON file ({e})") from e


def load_model(checkpoint: str, tokenizer_size: int):
    """The checkpoint's model in eval mode, never choosing ids the tokenizer does not have."""
    from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint
    from olmo_fn.model import Transformer

    cfg = model_config_of_checkpoint(checkpoint)
    specials = max(t for t in (cfg.eos_token_id, cfg.pad_token_id, 0) if t is not None)
    if specials < tokenizer_size < cfg.vocab_size:  # e.g. a Hugging Face folder records only the padded size
        cfg = dataclasses.replace(cfg, vocab_size=tokenizer_size, embedding_size=cfg.padded_vocab_size)
    model = Transformer(cfg).eval()
    load_checkpoint(checkpoint, model, None)
    return model


def quantize_and_report(model, kind: str, ids: torch.Tensor) -> None:
    """Quantise model in place and print the relative logit error against the unquantised model."""
    from olmo_fn.quantize import quantize, relative_logit_error

    if kind == "none":
        return
    with torch.no_grad():
        reference = model(ids)
        quantize(model, kind)
        error = relative_logit_error(reference, model(ids))
    print(f"[{kind}] relative logit error against fp32 on the first prompt: {error:.4f}", file=sys.stderr)


def stream(
    model,
    tokenizer,
    prompt_text: str,
    prompt_ids: list[int],
    max_new_tokens: int,
    sampling,
    stop,
    compile: bool,
) -> None:
    """Generate for one prompt, printing the prompt, then the text of new tokens as they come."""
    from olmo_fn.generate import generate

    new: list[int] = []
    shown = ""
    base = tokenizer.decode(prompt_ids)  # decode with the prompt, so the tokenizer places spaces as it would
    rest = lambda: tokenizer.decode(prompt_ids + new)[len(base) :]  # noqa: E731

    def on_step(token: torch.Tensor, done: torch.Tensor) -> None:
        nonlocal shown
        if not new:  # the prompt was accepted
            print(prompt_text, end="", flush=True)
        new.append(int(token[0]))
        text = rest()
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            print(text[len(shown) :], end="", flush=True)
            shown = text

    ids = torch.tensor([prompt_ids])
    generate(
        model,
        ids,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        stop=stop,
        on_step=on_step,
        compile=compile,
    )
    print(rest()[len(shown) :], flush=True)


def main(
    checkpoint: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")],
    tokenizer: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="TOKENIZER_JSON")],
    prompt: Annotated[list[str], tyro.conf.UseAppendAction] = [],  # noqa: B006 (tyro reads the default)
    prompts_file: str | None = None,
    ids: str | None = None,
    max_new_tokens: int = 64,
    sampling: Annotated[SamplingConfig, tyro.conf.OmitArgPrefixes] = GREEDY,
    stop: Annotated[list[str], tyro.conf.UseAppendAction] = [],  # noqa: B006
    compile: bool = False,
    quantize: Literal["none", "int8"] = "none",
    threads: int | None = None,
) -> None:
    """Continue each prompt with the checkpoint's model, streaming the new text.

    Args:
        checkpoint: Checkpoint folder or URL: olmo_fn native/sharded, original OLMo, or a Hugging Face folder.
        tokenizer: A tokenizers JSON file (e.g. tokenizer.json of a Hugging Face folder).
        prompt: Prompt text; repeat the flag for several prompts.
        prompts_file: A text file with one prompt per line.
        ids: One prompt given as token ids ('1 2 3'), for checking a model without its tokenizer's text.
        max_new_tokens: Most new tokens per prompt.
        sampling: Greedy by default; --do-sample with --temperature/--top-k/--top-p/--seed samples.
        stop: Stop a prompt when its new text contains this string (repeatable); EOS always stops.
        compile: torch.compile the decode step (worth it for long generations; compiling takes a while).
        quantize: 'int8': torchao int8 weight-only Linear weights; prints the relative logit error vs fp32.
        threads: torch intra-op threads (default: torch's choice).
    """
    from olmo_fn.generate import StopRule

    if threads:
        torch.set_num_threads(threads)
    tok = load_tokenizer(tokenizer)
    prompts = read_prompts(prompt, prompts_file, ids)
    model = load_model(checkpoint, tok.get_vocab_size(with_added_tokens=True))
    encoded = [p if isinstance(p, list) else tok.encode(p).ids for p in prompts]
    if any(not p for p in encoded):
        raise DataError("a prompt encodes to no tokens; give some text")
    quantize_and_report(model, quantize, torch.tensor([encoded[0]]))
    rule = StopRule(eos_token_id=model.config.eos_token_id, strings=tuple(stop), decode=tok.decode)
    for k, (text, p) in enumerate(zip(prompts, encoded, strict=True), 1):
        text = text if isinstance(text, str) else tok.decode(text)
        if len(prompts) > 1:
            print(f"=== prompt {k} of {len(prompts)} ===", flush=True)
        stream(model, tok, text, p, max_new_tokens, sampling, rule, compile)


if __name__ == "__main__":
    run_tool(main)  # also silences torchao's import-time noise
