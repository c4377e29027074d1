"""LoRA networks with kohya sd-scripts' semantics, kohya-format files, and sampling.

Importing this package does not import torch, peft or diffusers; the functions do, when called.
"""

from lrfind.network.inference import applied_loras, build_pipeline, generate_images, lora_delta
from lrfind.network.kohya_format import (
    kohya_module_name,
    kohya_name_lookup,
    load_lora,
    read_dim_and_alpha,
    safetensors_hashes,
    save_lora,
)
from lrfind.network.lora import LoraNetwork, attach_lora
from lrfind.network.spec import LoraSpec, NetworkSpec
from lrfind.network.attach import Network, attach_network
from lrfind.network.types import NetworkTypeEntry, check_network_args, network_type, network_types, type_of
from lrfind.network.metadata import dataset_metadata, kohya_metadata, modelspec_metadata, tag_frequency

__all__ = [
    "LoraNetwork",
    "LoraSpec",
    "Network",
    "NetworkSpec",
    "NetworkTypeEntry",
    "attach_network",
    "check_network_args",
    "applied_loras",
    "attach_lora",
    "build_pipeline",
    "dataset_metadata",
    "generate_images",
    "kohya_metadata",
    "kohya_module_name",
    "kohya_name_lookup",
    "load_lora",
    "lora_delta",
    "modelspec_metadata",
    "network_type",
    "network_types",
    "read_dim_and_alpha",
    "safetensors_hashes",
    "save_lora",
    "tag_frequency",
    "type_of",
]
