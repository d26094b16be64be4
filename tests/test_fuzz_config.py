"""Fuzzing the config readers (hypothesis, seeded and bounded): original OLMo YAML configs (random text,
mutations of an official file, dot-list overrides), olmo_fn's own config.yaml, and the command line.
Property: every input either gives a config or raises a ConfigError of one line; never another exception."""

import dataclasses
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict, config_to_dict, parse_cli
from olmo_fn.errors import ConfigError
from olmo_fn.original import load_yaml, read_original_config, train_config_from_original
from tests.test_original_config import MINIMAL


def _official(name: str, paths: int = 3) -> str:
    """An official config with only the first few of its training data paths (so that changes land on the
    rest)."""
    lines = (Path(__file__).parent / "fixtures" / "official_configs" / name).read_text().splitlines()
    data = lines.index("data:")
    npy = [i for i, line in enumerate(lines) if i > data and line.strip().startswith("- ") and ".npy" in line]
    return "\n".join(line for i, line in enumerate(lines) if i not in npy[paths:])


OFFICIAL = _official("OLMo-7B.yaml")


def fuzz(n: int):
    """n examples, the same ones every run (OLMO_FN_FUZZ_SCALE=k: k times as many, new ones each run)."""
    scale = int(os.environ.get("OLMO_FN_FUZZ_SCALE", "1"))
    return settings(max_examples=n * scale, deadline=None, derandomize=scale == 1, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip


def _one_line(error: Exception) -> None:
    assert isinstance(error, ConfigError) and "\n" not in str(error) and str(error), repr(error)


def _original_or_refused(text: str, overrides: list[str] | None = None) -> None:
    try:
        cfg, notes = train_config_from_original(read_original_config(text, overrides, where="c.yaml"))
    except ConfigError as e:
        _one_line(e)
        return
    assert isinstance(cfg, TrainConfig) and all(isinstance(n, str) for n in notes)


SCALARS = st.sampled_from(["", "null", "~", "true", "no", "0", "-1", "1e-6", "1.5", "0x10", "[]", "{}", "[1, 2]",
                           "abc", "'${run_name}'", "${model.d_model}", "${nope}", "${oc.env:NOPE_X,3}",
                           "${oc.env:NOPE_X}", "${x:y}", "${", "}", ".inf", ".nan", "2020-01-01", "!!binary aGk=",
                           "&a 1", "*a", "{a: 1}", "- 1"]) | st.text(max_size=6)  # fmt: skip


@st.composite
def mutated(draw, text: str) -> str:
    """A config with a few of its lines changed: a value replaced, a line dropped or repeated, or a few
    characters replaced."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["value", "drop", "repeat", "chars"]))
        if how == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + draw(SCALARS)
        elif how == "drop":
            del lines[i]
        elif how == "repeat":
            lines.insert(i, lines[i])
        elif lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.text(max_size=2)) + lines[i][j + 1 :]
        lines = lines or [""]
    return "\n".join(lines)


@fuzz(100)
@given(st.text(max_size=80))
def test_random_text_as_an_original_config(text):
    _original_or_refused(text)


@fuzz(250)
@given(mutated(MINIMAL))
def test_a_small_config_changed(text):
    _original_or_refused(text)


@fuzz(120)
@given(mutated(OFFICIAL))
def test_an_official_config_changed(text):
    _original_or_refused(text)


KEYS = ["run_name", "seed", "save_interval", "model.d_model", "model.n_heads", "model.layer_norm_eps",
        "optimizer.learning_rate", "optimizer.betas", "scheduler.t_warmup", "data.paths", "max_duration",
        "global_train_batch_size", "device_train_microbatch_size", "precision", "fsdp.sharding_strategy",
        "evaluators", "nope", "model", "model.nope.x", "compile.mode", "data.instance_filter.repetition_max_period"]  # fmt: skip


@fuzz(200)
@given(st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=5), st.booleans(), SCALARS), max_size=3))
def test_overrides(flags):
    _original_or_refused(MINIMAL, [f"--{k}={v}" if has else f"--{k}" for k, has, v in flags])


@fuzz(100)
@given(st.text(max_size=60) | st.just("[" * 500) | st.just("a: &a [1]\nb: &b [*a, *a]\n"))
def test_yaml_text(text):
    try:
        load_yaml(text, "c.yaml")
    except ConfigError as e:
        _one_line(e)


# --- olmo_fn's own config.yaml (what a checkpoint holds, and what experiments/original_config.py reads) -----

PLAIN = config_to_dict(TrainConfig())
PATHS = [(section, key) for section, value in PLAIN.items() if isinstance(value, dict) for key in value]
PATHS += [(key,) for key, value in PLAIN.items() if not isinstance(value, dict)]
VALUES = st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=5) | \
    st.lists(st.integers(0, 3) | st.text(max_size=3), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=1)  # fmt: skip


@fuzz(100)
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=2))
def test_an_olmo_fn_config_changed(changes):
    data = yaml.safe_load(yaml.safe_dump(PLAIN))
    for path, value in changes:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    try:
        cfg = config_from_dict(TrainConfig, data)
    except ConfigError as e:
        _one_line(e)
        return
    assert isinstance(cfg, TrainConfig)


# --- the command line -------------------------------------------------------------------------------------


def _flags(value, prefix=""):
    if dataclasses.is_dataclass(value):
        return [
            f
            for field in dataclasses.fields(value)
            for f in _flags(getattr(value, field.name), prefix + field.name + ".")
        ]
    return [prefix.rstrip(".")]  # fmt: skip


FLAGS = _flags(TrainConfig())
ARG = st.sampled_from(FLAGS).map(lambda f: "--" + f) | st.sampled_from(FLAGS).map(
    lambda f: "--" + f.replace("_", "-")
)
VALUE = (
    SCALARS
    | st.integers(-2, 70000).map(str)
    | st.sampled_from(["True", "False", "None", "[a.npy,b.npy]", "--"])
)


@fuzz(40)
@given(st.lists(st.tuples(ARG, st.booleans(), VALUE, st.booleans()), max_size=3))
def test_command_lines(args):
    argv = []
    for flag, joined, value, with_value in args:
        argv += [f"{flag}={value}"] if joined else [flag, value] if with_value else [flag]
    assume(not any(a in ("-h", "--help") or a.startswith(("--help=", "-h=")) for a in argv))
    try:
        cfg = parse_cli(TrainConfig, TrainConfig(), argv, program="x.py")
    except ConfigError as e:
        _one_line(e)
        assert str(e).endswith("see `python x.py --help`")
        return
    assert isinstance(cfg, TrainConfig)


@pytest.mark.parametrize("argv", [["--seed=x"], ["--nope"], ["--model.d_model=-1"], ["--seed"]])
def test_command_lines_that_do_not_parse_say_so_in_one_line(argv):
    with pytest.raises(ConfigError, match="see `python x.py --help`") as e:
        parse_cli(TrainConfig, TrainConfig(), argv, program="x.py")
    _one_line(e.value)


# --- what the fuzzing found, pinned -----------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)  # 9**9 values in 9 lines


@pytest.mark.parametrize(
    "text, says",
    [
        (BOMB, "expands to more than 1000000 values"),
        ("[" * 20_000, "nested too deeply"),  # deeper than any recursion limit (compiling raises it to 2000)
        ("{[1]: 2}", r"found unhashable key \(line 1, column 2\)"),
        ("a: 1\nb: 2\na: 3", r"found 'a' twice \(line 3, column 1\)"),
        ("x: !!python/object:os.system x", "could not determine a constructor"),
    ],
)
def test_yaml_that_cannot_be_read_safely_is_refused(text, says):
    with pytest.raises(ConfigError, match=says) as e:
        load_yaml(text, "c.yaml")
    _one_line(e.value)


@pytest.mark.parametrize(
    "path, value, says",
    [
        (("model", "d_model"), None, "model.d_model: must be set"),
        (("seed",), "7", "seed: expected an integer, got '7'"),
        (("optimizer", "learning_rate"), "fast", "optimizer.learning_rate: expected a number"),
        (("data", "paths"), "a.npy", "data.paths: expected a list"),
        (("precision", ), "fp16", "precision: 'fp16' is not one of"),
        (("save_overwrite",), "yes", "save_overwrite: expected true or false"),
    ],
)  # fmt: skip
def test_an_olmo_fn_config_value_of_the_wrong_type_names_its_field(path, value, says):
    data = config_to_dict(TrainConfig())
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=says):
        config_from_dict(TrainConfig, data)


@pytest.mark.parametrize(
    "override, says",
    [
        ("--seed=.inf", "seed: expected an integer, got inf"),
        ("--seed=abc", "seed: expected a number, got 'abc'"),
        ("--save_overwrite=maybe", "save_overwrite: expected true or false, got 'maybe'"),
        ("--model.d_model=", "model.d_model: expected a number, got None"),
        ("--data.paths=a.npy", "data.paths: expected a list, got 'a.npy'"),
        ("--model.eos_token_id='249'", "model.eos_token_id: expected an integer, got '249'"),
        ("--activation_checkpointing=[1]", "activation_checkpointing: expected a strategy name"),
    ],
)
def test_an_original_value_of_the_wrong_type_names_its_field(override, says):
    with pytest.raises(ConfigError, match=says) as e:
        train_config_from_original(read_original_config(MINIMAL, [override]))
    _one_line(e.value)
