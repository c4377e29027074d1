"""One LoRA module as kohya sd-scripts' `networks/lora.py` LoRAModule has it (imports torch).

output = base(x) + up(down(x)) * alpha/dim, with kohya's three dropouts, all in training only:
`module_dropout` skips the whole LoRA branch with that probability (one draw per call),
`dropout` (--network_dropout) is ordinary dropout on down(x), and `rank_dropout` zeroes ranks per
sample and rescales by 1/(1-p). peft's LoRA layer puts its dropout on the input x and has no rank
or module dropout, so lrfind has its own module (kept to kohya's forward line by line).

A Conv2d base layer gets a down conv with the base's kernel, stride and padding and a 1x1 up
conv: 4-D lora_down / lora_up, as kohya stores them (1x1 for proj_in/out, 3x3 for LoCon).
The LoRA weights are float32 whatever the base layer's dtype (as peft keeps them).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRAModule(nn.Module):
    """Wraps `base_layer` (an nn.Linear or nn.Conv2d) in place of it; `base_layer` is unchanged."""

    def __init__(self, base_layer: nn.Module, dim: int, alpha: float, *, dropout=None,
                 rank_dropout=None, module_dropout=None, mode_source: nn.Module | None = None):
        super().__init__()
        self.base_layer = base_layer
        if isinstance(base_layer, nn.Conv2d):
            self.lora_down = nn.Conv2d(base_layer.in_channels, dim, base_layer.kernel_size,
                                       base_layer.stride, base_layer.padding, bias=False)
            self.lora_up = nn.Conv2d(dim, base_layer.out_channels, (1, 1), (1, 1), bias=False)
        else:
            self.lora_down = nn.Linear(base_layer.in_features, dim, bias=False)
            self.lora_up = nn.Linear(dim, base_layer.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))  # as kohya (and Microsoft's)
        nn.init.zeros_(self.lora_up.weight)  # a fresh network leaves the output unchanged
        self.to(base_layer.weight.device)
        self.lora_dim, self.alpha, self.scale = int(dim), float(alpha), float(alpha) / int(dim)
        self.dropout, self.rank_dropout, self.module_dropout = dropout, rank_dropout, module_dropout
        # kohya switches dropout with network.train(); lrfind's loop switches the UNet's mode
        # (train / eval for validation and samples), so text-encoder modules follow the UNet.
        # Kept in a list: not a submodule.
        self._mode_source = [mode_source] if mode_source is not None else []

    @property
    def is_conv_kxk(self) -> bool:
        """A LoCon module (3x3 conv): takes conv_dim / conv_alpha rather than dim / alpha."""
        return isinstance(self.base_layer, nn.Conv2d) and self.base_layer.kernel_size != (1, 1)

    def _training(self) -> bool:
        return self._mode_source[0].training if self._mode_source else self.training

    def forward(self, x):
        return self.add_to(self.base_layer(x), x)

    def add_to(self, out, x):
        """`out` (the base layer's output for `x`) plus this module's LoRA branch of `x`."""
        training = self._training()
        if training and self.module_dropout is not None and torch.rand(1) < self.module_dropout:
            return out
        lx = self.lora_down(x.to(self.lora_down.weight.dtype))
        if training and self.dropout is not None:
            lx = nn.functional.dropout(lx, p=self.dropout)
        scale = self.scale
        if training and self.rank_dropout is not None:
            mask = torch.rand((lx.size(0), self.lora_dim), device=lx.device) > self.rank_dropout
            if lx.dim() == 3:
                mask = mask.unsqueeze(1)  # (batch, tokens, rank)
            elif lx.dim() == 4:
                mask = mask.unsqueeze(-1).unsqueeze(-1)  # (batch, rank, h, w)
            lx = lx * mask
            scale = self.scale * (1.0 / (1.0 - self.rank_dropout))  # as if the rank were smaller
        return out + (self.lora_up(lx) * scale).to(out.dtype)
