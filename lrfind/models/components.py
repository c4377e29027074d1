"""The loaded pieces of a Stable Diffusion model, as one object passed around."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SDComponents:
    unet: Any  # diffusers.UNet2DConditionModel
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer (the real CLIP BPE, built offline)
    noise_scheduler: Any  # diffusers.DDPMScheduler (training noise schedule)
    name: str  # "tiny", or the model file / folder name (kohya's ss_sd_model_name)
    prediction_type: str = "epsilon"  # or "v_prediction"
    family: str = "sd1"  # its lrfind.models.families name; `tiny` and `tiny-pretrained` are SD 1.x
    text_encoder_2: Any = None  # SDXL: transformers.CLIPTextModelWithProjection (OpenCLIP ViT-bigG); SD 1.x: None
    tokenizer_2: Any = None  # SDXL: the CLIP BPE padding with "!" (as SDXL's tokenizer_2); SD 1.x: None
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    def modules(self) -> dict[str, Any]:
        """{part: module} of the model's networks (unet, vae, text_encoder[, text_encoder_2])."""
        parts = {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}
        if self.text_encoder_2 is not None:
            parts["text_encoder_2"] = self.text_encoder_2
        return parts

    def fingerprint(self, part: str) -> str:
        """Content hash of one component's weights ("vae", "text_encoder", "text_encoder_2", "unet").

        Cache keys use it, so a cache built for one model is never read for another. Computed
        once per process and remembered.
        """
        if part not in self._fingerprints:
            self._fingerprints[part] = state_dict_fingerprint(getattr(self, part).state_dict())
        return self._fingerprints[part]


def state_dict_fingerprint(state_dict: dict) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return digest.hexdigest()
