"""What the U-Net is conditioned on, as one typed object for every family.

SD 1.x: the text encoder's hidden states. SDXL adds, through diffusers' `added_cond_kwargs`, the
second encoder's pooled (projected) output (`text_embeds`) and six size numbers per image
(`time_ids`: original size h, w; crop top, left; target size h, w). The loop and validation call
`unet(noisy, timesteps, **conditioning.unet_kwargs(dtype))` whatever the family.
Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class PromptEmbedding:
    """One caption's encoded text: what the text cache stores per caption (CPU, float32)."""

    hidden_states: Any  # [L, D]; SDXL: both encoders' penultimate states concatenated, D = D1 + D2
    pooled: Any = None  # SDXL: text_encoder_2's projected pooled output [P]; SD 1.x: None


@dataclass(frozen=True)
class UNetConditioning:
    """A batch's U-Net conditioning: [B, L, D] hidden states, plus SDXL's added conditioning."""

    hidden_states: Any
    text_embeds: Optional[Any] = None  # SDXL: [B, P] pooled text embedding
    time_ids: Optional[Any] = None  # SDXL: [B, 6] (original h, w, crop top, left, target h, w)

    def __post_init__(self) -> None:
        if (self.text_embeds is None) != (self.time_ids is None):
            raise ValueError("SDXL conditioning needs both text_embeds and time_ids (or neither)")

    @property
    def added(self) -> bool:
        return self.text_embeds is not None

    def unet_kwargs(self, dtype) -> dict:
        """Keyword arguments of diffusers' UNet2DConditionModel.forward, cast to `dtype`."""
        kwargs = {"encoder_hidden_states": self.hidden_states.to(dtype)}
        if self.added:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.text_embeds.to(dtype),
                                           "time_ids": self.time_ids.to(dtype)}
        return kwargs

    def to(self, device) -> "UNetConditioning":
        move = (lambda t: None if t is None else t.to(device))
        return UNetConditioning(move(self.hidden_states), move(self.text_embeds), move(self.time_ids))

    def rows(self, index: slice) -> "UNetConditioning":
        """The conditioning of some rows of the batch."""
        take = (lambda t: None if t is None else t[index])
        return UNetConditioning(take(self.hidden_states), take(self.text_embeds), take(self.time_ids))
