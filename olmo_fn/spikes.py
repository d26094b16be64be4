"""Loss spikes: leave out an optimizer step whose loss or gradient norm is not finite, or lies more than
`sigma` standard deviations above its mean over the recent steps (`--optimizer.skip_spikes`; the idea of
OLMo-core's SkipStepAdamW, which its OLMo-2 1B/7B/32B and OLMo-3 scripts use).

The rule, as `skip_reason` applies it:

- The values are the step's global ones, the same on every rank: the loss is the mean cross-entropy per
  label token over the whole global batch, the gradient norm the total one before clipping.
- A step whose loss, z-loss or gradient norm is not finite is skipped, from the first step on.
- A finite step is skipped when its loss, or its gradient norm, is more than sigma x std above the mean of
  the window (the last `length` steps before it; std with Bessel's correction). Only upward spikes count,
  and only once the window, counting the step itself, holds `min_values` values (OLMo-core's
  max(20, length // 2) by default, 64 for a window of 128).
- Every finite step enters the window, skipped or not, as in OLMo-core: a lasting jump of the loss becomes
  the new normal after some steps instead of being skipped for ever. A non-finite one never enters (it
  would make the mean non-finite, and so skip every step, until it left the window).
- A skipped step does not call optimizer.step(): parameters and AdamW state (moments and step count) stay
  untouched, bit for bit. The step still counts, as in OLMo-core, whose schedule follows the trainer's
  step: the learning-rate schedule, the data order and tokens_seen go on as if it had been applied.

The decision costs no device sync of its own: it uses the loss and gradient norm the train step already
brings to the host to check that they are finite. The window is part of the trainer state, so a resumed
run decides exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from olmo_fn.config import OptimizerConfig
from olmo_fn.errors import ConfigError


def default_min_values(length: int) -> int:
    """OLMo-core's rule: the spike test starts once max(20, length // 2) values (this step's included) exist."""
    return max(20, length // 2)


def check_spike_config(cfg: OptimizerConfig) -> None:
    """ConfigError naming the field when the skip_spikes settings cannot work (nothing to check when off)."""
    if not cfg.skip_spikes:
        return
    if cfg.skip_spikes_window < 2:
        raise ConfigError(
            f"optimizer.skip_spikes_window: {cfg.skip_spikes_window} steps cannot give a standard deviation; "
            "use 2 or more (OLMo-core uses 128)"
        )
    if not cfg.skip_spikes_sigma > 0:
        raise ConfigError(
            f"optimizer.skip_spikes_sigma: {cfg.skip_spikes_sigma} must be positive (OLMo-core: 6)"
        )
    low, high = 3, cfg.skip_spikes_window + 1
    if cfg.skip_spikes_min_values is not None and not low <= cfg.skip_spikes_min_values <= high:
        raise ConfigError(
            f"optimizer.skip_spikes_min_values: {cfg.skip_spikes_min_values} is outside {low}..{high} (the window "
            "of skip_spikes_window steps plus this one); use a value in that range, or leave it unset"
        )


def _mean_std(values: deque[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def skip_reason(
    losses: deque[float], grad_norms: deque[float], loss: float, z_loss: float, grad_norm: float,
    *, sigma: float, min_values: int,
) -> str | None:  # fmt: skip
    """Why this step is to be skipped given the window's earlier values (see the module's rule), or None."""
    if not (math.isfinite(loss) and math.isfinite(z_loss) and math.isfinite(grad_norm)):
        return f"non-finite step (loss {loss}, z-loss {z_loss}, grad norm {grad_norm})"
    if len(losses) + 1 < min_values:
        return None
    for name, value, window in (("loss", loss, losses), ("grad norm", grad_norm, grad_norms)):
        mean, std = _mean_std(window)
        if value - mean > sigma * std:
            sigmas = f"{(value - mean) / std:.1f} standard deviations" if std > 0 else "above a constant"
            return f"{name} {value:.6g} is {sigmas} above the mean {mean:.6g} of the last {len(window)} steps"
    return None


@dataclass
class SpikeWindow:
    """The recent losses and gradient norms a run judges its steps by, and how many steps it skipped."""

    length: int = 128
    sigma: float = 6.0
    min_values: int = 20
    losses: deque[float] = field(default_factory=deque)
    grad_norms: deque[float] = field(default_factory=deque)
    skipped: int = 0
    """Steps skipped so far in the run (also before a resume)."""

    @classmethod
    def from_config(cls, cfg: OptimizerConfig, state: dict | None = None) -> SpikeWindow | None:
        """The window of a run (None when skip_spikes is off), restored from a trainer state's 'spikes'."""
        if not cfg.skip_spikes:
            return None
        length = cfg.skip_spikes_window
        min_values = cfg.skip_spikes_min_values or default_min_values(length)
        window = cls(length, cfg.skip_spikes_sigma, min(min_values, length + 1))
        if state:
            window.losses.extend(state["losses"][-length:])
            window.grad_norms.extend(state["grad_norms"][-length:])
            window.skipped = state["skipped"]
        return window

    def judge(self, loss: float, z_loss: float, grad_norm: float) -> str | None:
        """Decide one step (the reason it is skipped, or None), then record it as the module says."""
        reason = skip_reason(self.losses, self.grad_norms, loss, z_loss, grad_norm,
                             sigma=self.sigma, min_values=self.min_values)  # fmt: skip
        if math.isfinite(loss) and math.isfinite(z_loss) and math.isfinite(grad_norm):
            for values, value in ((self.losses, loss), (self.grad_norms, grad_norm)):
                values.append(value)
                while len(values) > self.length:
                    values.popleft()
        self.skipped += reason is not None
        return reason

    def state_dict(self) -> dict:
        """Plain floats (exact through JSON) for the trainer state."""
        return {"losses": list(self.losses), "grad_norms": list(self.grad_norms), "skipped": self.skipped}


def spike_metrics(window: SpikeWindow | None, skipped: bool) -> dict[str, float]:
    """The step's flag and the run's count of skipped steps, under OLMo-core-like keys (none when off)."""
    if window is None:
        return {}
    return {"optim/step_skipped": float(skipped), "optim/skipped_steps": float(window.skipped)}
