"""int8 weight-only quantisation for generation (torchao), and how far it moves the logits.

Every nn.Linear (the q/k/v/o and MLP projections) gets int8 weights with per-channel scales; the embedding
and the output head stay in their dtype. On CPU this cuts weight memory about 4x but is not faster.
"""

from __future__ import annotations

import torch
from torch import nn

from olmo_fn.errors import ConfigError

QUANTIZATIONS = ("none", "int8")


def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantise model's Linear weights to int8 in place (torchao Int8WeightOnlyConfig); returns model."""
    from olmo_fn.launch import quiet_third_party

    quiet_third_party()  # torchao's import-time noise
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig())
    return model


def quantize(model: nn.Module, kind: str) -> nn.Module:
    """Apply the named quantisation ('none' or 'int8') to model in place."""
    if kind not in QUANTIZATIONS:
        raise ConfigError(f"quantize: {kind!r} is not one of {', '.join(QUANTIZATIONS)}")
    return quantize_int8(model) if kind == "int8" else model


def relative_logit_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """||approx - reference|| / ||reference|| over all logits, in fp32."""
    reference, approx = reference.float(), approx.float()
    return float((approx - reference).norm() / reference.norm().clamp_min(1e-30))
