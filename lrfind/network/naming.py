"""kohya's LoRA module names per model family: which prefix each part gets, and the U-Net's layout.

SD 1.x: `lora_unet_<diffusers path>` and `lora_te_text_model_<...>` (kohya_format.kohya_module_name).
SDXL: kohya's sdxl_train_network.py trains its own U-Net in the original SGM layout
(library/sdxl_original_unet.py), so its names are SGM paths: `lora_unet_input_blocks_4_1_
transformer_blocks_0_attn1_to_q`, `lora_unet_middle_block_1_...`, `lora_unet_output_blocks_...`;
its two text encoders are `lora_te1_text_model_...` (CLIP ViT-L) and `lora_te2_text_model_...`
(OpenCLIP ViT-bigG). lrfind trains diffusers' U-Net and maps each module path to the SGM path with
the same table `lrfind model save --single-file` writes U-Net weights with (models/to_original.py),
so a name is what kohya would write for the same layer. Inside a Transformer2DModel the SGM and
diffusers paths are equal (`transformer_blocks.0.attn1.to_q`, `ff.net.0.proj`, `proj_in`); resnets
rename (`conv1` -> `in_layers.2`, `time_emb_proj` -> `emb_layers.1`, `conv2` -> `out_layers.3`,
`conv_shortcut` -> `skip_connection`), samplers move (`downsamplers.0.conv` -> `input_blocks.N.0.op`).
The layers outside every block have SGM names too (`conv_in` -> `input_blocks.0.0`,
`time_embedding.linear_1` -> `time_embed.0`, `add_embedding.linear_2` -> `label_emb.0.2`,
`conv_out` -> `out.2`): kohya's networks.lora never adapts them, a LyCORIS preset may.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from lrfind.models.to_original import unet_block_map, unet_layer_map
from lrfind.network.kohya_format import UNET_PREFIX, kohya_module_name

SDXL_TEXT_ENCODER_PREFIXES = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


@dataclass(frozen=True)
class KohyaNaming:
    """Module path -> kohya LoRA name for one model. `sgm_blocks` is None for SD 1.x."""

    sgm_blocks: Optional[tuple] = None  # unet_block_map of an SDXL U-Net: (diffusers prefix, SGM prefix, renames)
    sgm_layers: tuple = ()  # (diffusers path, SGM path) of the layers outside every block

    @property
    def sdxl(self) -> bool:
        return self.sgm_blocks is not None

    def name(self, part: str, module_path: str) -> str:
        if not self.sdxl:
            return kohya_module_name(part, module_path)
        module_path = module_path.removesuffix(".base_layer")
        if part == "unet":
            return UNET_PREFIX + self.sgm_path(module_path).replace(".", "_")
        if not module_path.startswith("text_model."):  # transformers >= 5.6 dropped the level; kohya has it
            module_path = "text_model." + module_path
        return SDXL_TEXT_ENCODER_PREFIXES[part] + module_path.replace(".", "_")

    def lookup(self, part: str, module_paths: Iterable[str]) -> dict[str, str]:
        """kohya name -> module path (names are generated and matched: `_` is ambiguous)."""
        return {self.name(part, path): path for path in module_paths}

    def sgm_path(self, module_path: str) -> str:
        """The SGM path of a U-Net module path (ValueError for one with no SGM counterpart)."""
        outside = dict(self.sgm_layers)
        if module_path in outside:
            return outside[module_path]
        for diffusers_prefix, sgm_prefix, renames in self.sgm_blocks:
            if (module_path + ".").startswith(diffusers_prefix):
                rest = (module_path + ".")[len(diffusers_prefix):]
                for new, old in renames:
                    if rest == new + "." or rest.startswith(new + "."):
                        rest = old + rest[len(new):]
                        break
                return (sgm_prefix + rest).rstrip(".")
        # the blocks' containers (down_blocks.0) and the time embeddings' activations: no SGM module
        raise ValueError(f"no SGM name for U-Net module {module_path!r}")


def has_two_text_encoders(components: Any) -> bool:
    """SDXL's layout (SDComponents.text_encoder_2 set); any object with a unet and text_encoder otherwise."""
    return getattr(components, "text_encoder_2", None) is not None


def naming_for(components: Any) -> KohyaNaming:
    """The naming of a loaded model: SGM U-Net names and lora_te1_/lora_te2_ for SDXL."""
    return sgm_naming(components.unet) if has_two_text_encoders(components) else KohyaNaming()


def sgm_naming(unet: Any) -> KohyaNaming:
    """The naming of an SDXL U-Net (diffusers layout) in kohya's SGM paths."""
    config = dict(unet.config)
    layers = {key.rpartition(".")[0]: value.rpartition(".")[0] for key, value in unet_layer_map(config).items()}
    return KohyaNaming(tuple(unet_block_map(config)), tuple(layers.items()))


def text_encoder_parts(components: Any) -> tuple[str, ...]:
    """The text-encoder parts a text-encoder LoRA adapts (SDXL: both, kohya's default)."""
    return ("text_encoder", "text_encoder_2") if has_two_text_encoders(components) else ("text_encoder",)
