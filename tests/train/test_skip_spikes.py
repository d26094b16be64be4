"""--optimizer.skip_spikes: the decision rule, a skipped step that changes nothing (parameters, AdamW state),
a tiny run that skips injected spikes and goes on, the old stop when the option is off, and an exact resume
(the window is part of the trainer state)."""

import dataclasses
import json
import math
from collections import deque

import pytest
import torch

from olmo_fn.checkpoint import find_latest, load_checkpoint
from olmo_fn.config import ModelConfig, OptimizerConfig
from olmo_fn.errors import ConfigError, TrainingError
from olmo_fn.model import Transformer, init_weights
from olmo_fn.optim import build_optimizer
from olmo_fn.run_context import Hooks
from olmo_fn.spikes import SpikeWindow, check_spike_config, skip_reason
from olmo_fn.train import train
from olmo_fn.train_step import train_step
from tests.train.conftest import tiny_config

NAN, INF = float("nan"), float("inf")
BASE = [2.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(40)]  # mean 2.0, std ~0.014


def _reason(history, loss, grad_norm=1.0, z=0.0, min_values=20):
    losses, norms = deque(history), deque([1.0 + 0.01 * (i % 3) for i in range(len(history))])
    return skip_reason(losses, norms, loss, z, grad_norm, sigma=6.0, min_values=min_values)


def test_non_finite_steps_are_skipped_from_the_first_step():
    assert "non-finite" in _reason([], NAN)
    assert "non-finite" in _reason([], 2.0, grad_norm=INF)
    assert "non-finite" in _reason([], 2.0, z=NAN)
    assert _reason([], 50.0) is None  # a finite value with no history: nothing to compare with


def test_a_spike_is_skipped_once_the_window_holds_enough_values():
    assert _reason(BASE[:18], 3.0) is None  # 18 earlier values + this one < 20
    assert _reason(BASE[:19], 3.0).startswith("loss 3 is ")  # 19 + this one = 20: judged
    assert _reason(BASE, 2.0 + 5 * 0.014) is None  # within 6 sigma
    assert _reason(BASE, -100.0) is None  # only upward spikes count
    assert _reason(BASE, 2.0, grad_norm=5.0).startswith("grad norm 5 is ")


def test_the_window_keeps_skipped_spikes_but_no_non_finite_value():
    window = SpikeWindow(length=4, sigma=6.0, min_values=3)
    for loss in (2.0, 2.01, 1.99):
        assert window.judge(loss, 0.0, 1.0) is None
    assert window.judge(9.0, 0.0, 1.0) is not None  # a spike: skipped, and recorded
    assert window.judge(NAN, 0.0, 1.0) is not None  # non-finite: skipped, not recorded
    assert list(window.losses) == [2.0, 2.01, 1.99, 9.0] and window.skipped == 2
    window.judge(2.0, 0.0, 1.0)  # the window keeps its last `length` steps
    assert list(window.losses) == [2.01, 1.99, 9.0, 2.0] and list(window.grad_norms) == [1.0] * 4
    again = SpikeWindow.from_config(
        OptimizerConfig(skip_spikes=True, skip_spikes_window=4, skip_spikes_min_values=3),
        json.loads(json.dumps(window.state_dict())),  # the trainer state is JSON: floats come back exactly
    )
    assert again == window


def test_defaults_and_config_checks():
    assert SpikeWindow.from_config(OptimizerConfig()) is None  # off by default
    on = SpikeWindow.from_config(OptimizerConfig(skip_spikes=True))
    assert (on.length, on.sigma, on.min_values) == (128, 6.0, 64)  # OLMo-core's SkipStepAdamW defaults
    assert SpikeWindow.from_config(OptimizerConfig(skip_spikes=True, skip_spikes_window=8)).min_values == 9
    check_spike_config(OptimizerConfig(skip_spikes=True))
    for bad, field in (({"skip_spikes_window": 1}, "window"), ({"skip_spikes_sigma": 0.0}, "sigma"),
                       ({"skip_spikes_min_values": 2}, "min_values"), ({"skip_spikes_min_values": 130}, "min_values")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"optimizer.skip_spikes_{field}"):
            check_spike_config(OptimizerConfig(skip_spikes=True, **bad))


def test_a_skipped_train_step_changes_neither_parameters_nor_adam_state():
    cfg = ModelConfig(d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64, vocab_size=64, embedding_size=64,
                      eos_token_id=0, pad_token_id=1, max_sequence_length=16)  # fmt: skip
    model = Transformer(cfg)
    init_weights(model, cfg, seed=1)
    opt = build_optimizer(model, OptimizerConfig(learning_rate=1e-2))
    batch = {"input_ids": torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))}
    window = SpikeWindow(length=30, sigma=6.0, min_values=20)
    assert (
        train_step(model, opt, batch, lr=1e-2, microbatch_size=2, max_grad_norm=1.0, spikes=window).skipped
        is None
    )
    window.losses = deque(0.1 + 0.001 * (i % 2) for i in range(25))  # a history far below the real loss (~4)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
    m = train_step(model, opt, batch, lr=1e-2, microbatch_size=2, max_grad_norm=1.0, spikes=window)
    assert m.skipped.startswith("loss ") and window.skipped == 1 and math.isfinite(m.ce_loss)
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    for p, s in opt.state.items():  # moments and the step count (bias correction) untouched
        assert all(torch.equal(v, state[id(p)][k]) for k, v in s.items())
    assert all(p.grad is None for p in model.parameters())


SPIKES = {3: INF, 7: 30.0}  # step -> factor on the final norm's output: a non-finite step, a loss spike


def _spiky_run(cfg, spikes=SPIKES):
    """Train cfg with the final norm's output multiplied at the given steps; per step: the parameters and
    Adam step count after it, and its logged metrics."""
    params, adam_steps, logged = {}, {}, {}

    def build(run):
        def hook(module, args, out):
            factor = spikes.get(run.state.step + 1)
            return None if factor is None or not torch.is_grad_enabled() else out * factor

        run.model.lm_head.norm.register_forward_hook(hook)

    def after_step(run, batch, metrics):
        params[run.state.step] = {k: v.clone() for k, v in run.model.state_dict().items()}
        adam_steps[run.state.step] = [float(s["step"]) for s in run.optimizer.state.values()]

    def log(run, step, metrics, context):
        if context.get("subset") == "train":
            logged[step] = metrics

    train(cfg, Hooks(after_build=[build], after_step=[after_step], before_log=[log]))
    return params, adam_steps, logged


def _skipping(tmp_path, **changes):
    cfg = tiny_config(tmp_path, max_duration="10", eval_interval=None, save_interval_unsharded=5, **changes)
    optimizer = dataclasses.replace(
        cfg.optimizer, skip_spikes=True, skip_spikes_window=8, skip_spikes_min_values=4
    )
    return dataclasses.replace(cfg, optimizer=optimizer)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    cfg = _skipping(tmp_path_factory.mktemp("straight"))
    return cfg, *_spiky_run(cfg)


def test_a_run_skips_the_injected_spikes_and_goes_on(straight):
    cfg, params, adam_steps, logged = straight
    assert sorted(logged) == list(range(1, 11))
    assert [s for s, m in logged.items() if m["optim/step_skipped"]] == [3, 7]
    assert [logged[s]["optim/skipped_steps"] for s in (2, 3, 6, 7, 10)] == [0, 1, 1, 2, 2]
    for step in SPIKES:  # nothing of a skipped step is applied, and the steps around it are
        assert all(torch.equal(v, params[step - 1][k]) for k, v in params[step].items()), step
        assert adam_steps[step] == adam_steps[step - 1] and adam_steps[step + 1][0] == adam_steps[step][0] + 1
        assert any(not torch.equal(v, params[step][k]) for k, v in params[step + 1].items())
    assert adam_steps[10][0] == 8  # 10 steps, 2 skipped
    assert (
        logged[3]["optim/learning_rate_group0"] != logged[2]["optim/learning_rate_group0"]
    )  # schedule goes on
    assert all(math.isfinite(logged[s]["train/CrossEntropyLoss"]) for s in logged if s != 3)


def test_without_the_option_a_non_finite_step_still_stops_the_run(tmp_path):
    cfg = tiny_config(tmp_path, max_duration="4", eval_interval=None, save_interval_unsharded=None)
    with pytest.raises(TrainingError, match="non-finite training step"):
        _spiky_run(cfg, {3: INF})


def test_a_resumed_run_skips_as_the_uninterrupted_one(straight, tmp_path, capsys):
    cfg, expected, _, expected_logs = straight
    first = dataclasses.replace(_skipping(tmp_path), stop_at=5)
    _spiky_run(first)
    capsys.readouterr()
    params, _, logged = _spiky_run(dataclasses.replace(first, stop_at=None, try_load_latest_save=True))
    assert "[step 7] optimizer step skipped: loss " in capsys.readouterr().out
    assert sorted(logged) == [6, 7, 8, 9, 10]  # step 7 judged with steps 1-6 in the restored window
    for step in logged:
        for key in ("train/CrossEntropyLoss", "optim/step_skipped", "optim/skipped_steps"):
            assert logged[step][key] == expected_logs[step][key], (step, key)
    assert all(torch.equal(v, expected[10][k]) for k, v in params[10].items())
    saved = [load_checkpoint(find_latest(c.save_folder), Transformer(c.model), None) for c in (cfg, first)]
    assert saved[0].trainer_state["spikes"] == saved[1].trainer_state["spikes"]
