"""Original OLMo YAML configs read the way the original's OmegaConf loader reads them, and mapped to olmo_fn."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmo_fn.data.memmap import read_paths_file
from olmo_fn.errors import ConfigError
from olmo_fn.original import read_original_config, train_config_from_original

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT / "tests" / "fixtures" / "official_configs"

MINIMAL = """
run_name: tiny
model: {d_model: 64, n_heads: 4, n_layers: 2, include_bias: false, rope: true, attention_dropout: 0.0,
        residual_dropout: 0.0, embedding_dropout: 0.0, layer_norm_eps: 1e-6, vocab_size: 250,
        embedding_size: 256, eos_token_id: 249, pad_token_id: 1, max_sequence_length: 64}
optimizer: {name: adamw, learning_rate: 4e-4}
precision: fp32
save_folder: runs/${run_name}
eval_interval: ${save_interval}
"""


def _config(text: str = MINIMAL, overrides=None):
    return train_config_from_original(read_original_config(text, overrides))


def test_scalars_defaults_and_interpolations_follow_the_original_loader():
    cfg, notes = _config()
    assert cfg.model.layer_norm_eps == 1e-6 and isinstance(cfg.model.layer_norm_eps, float)  # a str to PyYAML
    assert cfg.optimizer.learning_rate == 4e-4
    assert cfg.model.layer_norm_with_affine and cfg.model.weight_tying  # the original's defaults, not ours
    assert cfg.save_folder == "runs/tiny" and cfg.eval_interval == 1000  # save_interval's default
    assert cfg.save_interval == 1000 and cfg.save_interval_unsharded is None
    assert cfg.optimizer.eps == 1e-5 and cfg.max_grad_norm is None and cfg.auxiliary_loss_multiplier == 1e-4
    cfg, _ = _config(
        overrides=["--run-name=other", "--save_interval=250", "--save_overwrite", "--data.paths=[a,b]"]
    )
    assert cfg.save_folder == "runs/other" and cfg.eval_interval == 250 and cfg.save_overwrite
    assert cfg.data.paths == ["a", "b"]
    assert cfg.original_trainer.builtin_z_loss_multiplier and cfg.original_trainer.lagged_clip_warmup


def test_resolvers_of_the_official_files(tmp_path, monkeypatch):
    for name in ("b.npy", "a.npy", "c.npy"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.delenv("SCRATCH_NOPE", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    text = MINIMAL.replace("save_folder: runs/${run_name}", (
        "save_folder: ${path.choose:${oc.env:SCRATCH_NOPE,no_exist}/checkpoints," + str(tmp_path) + "}/"
        "${oc.env:SLURM_JOB_ID,${run_name}}\n"
        f"data: {{paths: '${{path.glob:{tmp_path}/c.npy,{tmp_path}/[ab].npy}}'}}"
    ))  # fmt: skip
    cfg, _ = _config(text)
    assert cfg.save_folder == f"{tmp_path}/77"
    assert cfg.data.paths == [
        f"{tmp_path}/c.npy",
        f"{tmp_path}/a.npy",
        f"{tmp_path}/b.npy",
    ]  # sorted per pattern
    monkeypatch.delenv("SLURM_JOB_ID")
    assert _config(text)[0].save_folder == f"{tmp_path}/tiny"


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (MINIMAL + "optimzer: {}\n", None, "optimzer: not a field of the original OLMo TrainConfig"),
        (MINIMAL, ["--model.d_modle=8"], "--model.d_modle: not a field"),
        (MINIMAL, ["--model.alibi=true"], "model.alibi: True is not supported"),
        (MINIMAL, ["--max_grad_norm_ratio=1.0"], "max_grad_norm_ratio: 1.0 is not supported"),
        (MINIMAL.replace("include_bias: false, ", ""), None, "model.include_bias: True is not supported"),
        (MINIMAL, ["--eval_interval=${nope}"], "${nope} names no field"),
        (MINIMAL, ["--run_name=${run_name}"], "refers back to itself"),
        (MINIMAL + "epoch: 3\n", None, "epoch: 3 is not supported"),
    ],
)
def test_bad_configs_name_the_field(text, overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        _config(text, overrides)
    assert message in str(info.value)


def test_fields_without_effect_are_named_in_one_line():
    _, notes = _config(MINIMAL + "wandb: {project: p}\nspeed_monitor: {window_size: 20}\n")
    (line,) = [n for n in notes if n.startswith("no effect here")]
    assert "wandb" in line and "speed_monitor" in line and "gen1_gc_interval" not in line


def test_fsdp_and_evaluators_are_mapped():
    text = MINIMAL + (
        "fsdp: {sharding_strategy: SHARD_GRAD_OP, precision: mixed}\nactivation_checkpointing: one_in_two\n"
        "evaluators:\n  - label: v3\n    data: {datasets: {c4: [c4.npy], books: [b.npy]}}\n"
        "  - label: piqa\n    type: downstream\n"
    )
    cfg, notes = _config(text)
    assert not cfg.parallel.reshard_after_forward and cfg.parallel.activation_checkpointing == "full"
    assert cfg.parallel.activation_checkpointing_interval == 2
    assert cfg.eval.datasets == {"c4": ["c4.npy"], "books": ["b.npy"]}
    assert [(e.label, e.type) for e in cfg.evaluators] == [("piqa", "downstream")]
    hybrid, _ = _config(
        text.replace("SHARD_GRAD_OP", "HYBRID_SHARD"), ["--fsdp.hybrid_sharding_num_model_replicas=2"]
    )
    assert hybrid.parallel.dp_replicate == 2


OFFICIAL_PATHS = {"OLMo-1B.yaml": 249, "OLMo-7B.yaml": 443, "OLMo2-7B-stage1.yaml": 1122}


@pytest.mark.parametrize("name", sorted(p.name for p in OFFICIAL.glob("*.yaml")))
def test_official_configs_load_with_their_data_in_order(name, monkeypatch, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.setenv("SCRATCH_DIR", str(tmp_path))  # OLMo-1B: ${path.choose:${oc.env:SCRATCH_DIR,...}/...}
    text = (OFFICIAL / name).read_text()
    cfg, _ = _config(text)
    raw = yaml.safe_load(text)["data"]
    listed = raw.get("paths") or [p for label in sorted(raw["datasets"]) for p in raw["datasets"][label]]
    assert cfg.data.paths == listed or [p for v in (cfg.data.datasets or {}).values() for p in v]
    if name in OFFICIAL_PATHS:
        assert len(cfg.data.paths) == OFFICIAL_PATHS[name]
    assert cfg.model.d_model in (2048, 4096, 5120)


def test_a_data_list_file(tmp_path):
    (tmp_path / "list.txt").write_text("# the mix\nhttps://host/a.npy\n\nparts/b.npy\n/abs/c.npy\n")
    assert read_paths_file(str(tmp_path / "list.txt")) == [
        "https://host/a.npy",
        f"{tmp_path}/parts/b.npy",
        "/abs/c.npy",
    ]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="lists no token file"):
        read_paths_file(str(tmp_path / "empty.txt"))


def test_the_command_prints_one_line_for_a_bad_config(tmp_path):
    (tmp_path / "bad.yaml").write_text(MINIMAL + "model_typo: 1\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "original_config.py"), "bad.yaml", "--tracking.no-aim"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "error: model_typo: not a field of the original OLMo TrainConfig; remove it or " \
        "check its spelling"  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_a_checkpoints_config_yaml_read_by_pyyaml_still_gives_the_model():
    from olmo_fn.checkpoint.olmo import model_config_from_olmo

    section = yaml.safe_load((OFFICIAL / "OLMo2-7B-stage1.yaml").read_text())["model"]
    assert section["layer_norm_eps"] == "1e-6"  # PyYAML reads it as a string: the old TypeError
    model = model_config_from_olmo(section)
    assert model.layer_norm_eps == 1e-6 and model.family == "olmo2" and model.n_layers == 32


def test_a_config_from_a_url(tmp_path, monkeypatch):
    from olmo_fn.original.run import config_from_yaml
    from tests.checkpoint.servers import http_server

    monkeypatch.chdir(tmp_path)
    with http_server(OFFICIAL) as server:
        cfg, notes, rest = config_from_yaml(f"{server.url}/OLMo-7B.yaml", ["--run_name=x", "--parallel.tp=2"])
    assert cfg.run_name == "x" and len(cfg.data.paths) == 443 and rest == ["--parallel.tp=2"]
    assert any(n.startswith("stop_at unset") for n in notes)


RECIPE_YAMLS = {
    "olmo_1b": "OLMo-1B.yaml", "olmo_7b": "OLMo-7B.yaml", "olmo_7b_twin_2t": "OLMo-7B.yaml",
    "olmo_7b_0424": "OLMo-7B-0724.yaml", "olmo_7b_0724": "OLMo-7B-0724.yaml", "olmo2_1b": "OLMo2-1B-stage1.yaml",
    "olmo2_7b": "OLMo2-7B-stage1.yaml", "olmo2_13b": "OLMo2-13B-stage1.yaml",
}  # fmt: skip
TRAINING_FIELDS = (
    "seed global_train_batch_size device_train_microbatch_size precision max_duration max_grad_norm "
    "softmax_auxiliary_loss auxiliary_loss_multiplier compile save_interval save_interval_unsharded "
    "save_num_checkpoints_to_keep save_num_unsharded_checkpoints_to_keep"
).split()


@pytest.mark.parametrize("recipe", sorted(RECIPE_YAMLS))
def test_each_recipe_trains_as_its_official_yaml_run_as_it_is(recipe, monkeypatch, tmp_path):
    """Two independent readings of the official configs agree: the recipe (transcribed by hand) and the
    YAML read by the loader."""
    from dataclasses import asdict

    from olmo_fn.recipes import load_recipe

    (tmp_path / "checkpoints").mkdir()
    monkeypatch.setenv("SCRATCH_DIR", str(tmp_path))
    ours = asdict(load_recipe(recipe).config())
    official = asdict(_config((OFFICIAL / RECIPE_YAMLS[recipe]).read_text())[0])
    if not official["model"]["attention_layer_norm"]:  # no QK-norm: its affine flag means nothing
        ours["model"].pop("attention_layer_norm_with_affine")
        official["model"].pop("attention_layer_norm_with_affine")
    # the one departure: the OLMo 2 recipes whose OLMo-core scripts use SkipStepAdamW skip loss spikes
    assert ours["optimizer"].pop("skip_spikes") == (recipe in ("olmo2_1b", "olmo2_7b")), recipe
    assert official["optimizer"].pop("skip_spikes") is False
    for section in ("model", "optimizer", "scheduler"):
        assert ours[section] == official[section], section
    assert {k: ours[k] for k in TRAINING_FIELDS} == {k: official[k] for k in TRAINING_FIELDS}
    for key in ("memmap_dtype", "instance_filter", "drop_last"):
        assert ours["data"][key] == official["data"][key], key
    assert ours["evaluators"] == official["evaluators"]  # the downstream tasks, in order
    assert official["tokenizer"]["identifier"].endswith(
        ours["tokenizer"]["identifier"]
    )  # found in the package
    trainer = ours["original_trainer"]  # the recipes turn on what applies to them; a YAML run turns on both
    assert trainer["builtin_z_loss_multiplier"] == ours["softmax_auxiliary_loss"]
    assert trainer["lagged_clip_warmup"] == (ours["scheduler"]["grad_clip_warmup_steps"] is not None)
