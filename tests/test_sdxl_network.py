"""kohya's SDXL LoRA: module names and set equal kohya's networks.lora on kohya's own SDXL U-Net
(imported from the fetched sd-scripts mirror, built on the meta device), the text-encoder rule,
file metadata, and diffusers' StableDiffusionXLPipeline.load_lora_weights consuming every key."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from lrfind.models.components import SDComponents
from lrfind.network import NetworkSpec, attach_network

KOHYA_MIRROR = Path(os.environ.get("LRFIND_KOHYA_MIRROR", "/work/.mirror/kohya-ss+sd-scripts/repo"))


@pytest.fixture(scope="module")
def tiny_sdxl():
    from lrfind.models.builtin import build_builtin

    return build_builtin("tiny-sdxl", 0)


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = module
    return module


@pytest.fixture(scope="module")
def kohya(tmp_path_factory):
    """kohya's networks.lora and SdxlUNet2DConditionModel from the sd-scripts mirror.

    They do not import cleanly here: library/utils.py imports torchvision and cv2 (image
    utilities this test never calls), so those two are stubbed, after diffusers and its peft
    loader are imported (diffusers probes for torchvision when first imported)."""
    if not (KOHYA_MIRROR / "HEAD").exists() and not (KOHYA_MIRROR / ".git").exists():
        pytest.skip(f"no kohya sd-scripts mirror at {KOHYA_MIRROR} (set LRFIND_KOHYA_MIRROR)")
    root = tmp_path_factory.mktemp("sd-scripts")
    archive = subprocess.run(["git", "-C", str(KOHYA_MIRROR), "archive", "HEAD", "networks/lora.py", "library/"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", str(root)], input=archive, check=True)
    import diffusers.loaders.peft  # noqa: F401  (before the torchvision stub)

    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.transforms", "cv2")}
    _stub("torchvision").transforms = _stub("torchvision.transforms")
    _stub("cv2")
    sys.path.insert(0, str(root))
    try:
        from library.sdxl_original_unet import SdxlUNet2DConditionModel
        import networks.lora as kohya_lora
    finally:
        sys.path.remove(str(root))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return kohya_lora, SdxlUNet2DConditionModel


@pytest.fixture(scope="module")
def kohya_unet(kohya):
    with torch.device("meta"):
        return kohya[1]()


def _meta_sdxl() -> SDComponents:
    """SDXL base's diffusers U-Net and both encoders from the shipped configs, on the meta device."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lrfind.models.config_dirs import sdxl_config_dir

    folder = sdxl_config_dir()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2")))
    return SDComponents(unet=unet, vae=None, text_encoder=te1, tokenizer=None, noise_scheduler=None, name="sdxl",
                        family="sdxl", text_encoder_2=te2)


def _with_text_model(name: str) -> str:
    for prefix in ("lora_te1_", "lora_te2_"):
        if name.startswith(prefix) and not name.startswith(prefix + "text_model_"):
            return prefix + "text_model_" + name[len(prefix):]
    return name


@pytest.mark.parametrize("conv_dim", [None, 4])
def test_module_names_equal_kohya_networks_lora_on_sdxl(kohya, kohya_unet, conv_dim):
    kohya_lora, _ = kohya
    components = _meta_sdxl()
    extra = {"conv_dim": str(conv_dim), "conv_alpha": "1"} if conv_dim else {}
    theirs = kohya_lora.create_network(1.0, 8, 4.0, None, [components.text_encoder, components.text_encoder_2],
                                       kohya_unet, **extra)
    # kohya runs on transformers 4.x, whose CLIPTextModel has a `text_model.` level that
    # transformers >= 5.6 (installed here) dropped; kohya's names on 4.x have it, as lrfind's do.
    their_names = [_with_text_model(lora.lora_name) for lora in theirs.text_encoder_loras + theirs.unet_loras]
    args = {"conv_dim": conv_dim, "conv_alpha": 1} if conv_dim else {}
    ours = attach_network(components, NetworkSpec(network_dim=8, network_alpha=4.0, train_text_encoder=True,
                                                  network_args=args), seed=0)
    try:
        our_names = ours.module_names()
        assert len(our_names) == len(set(our_names))
        assert set(our_names) == set(their_names)
        assert len(our_names) == (1052 if conv_dim else 986)  # 264 of them in the text encoders
        assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in our_names
        assert "lora_unet_middle_block_1_transformer_blocks_9_ff_net_2" in our_names
        assert "lora_te2_text_model_encoder_layers_31_mlp_fc2" in our_names
        # Shapes too: each module adapts a layer of the same size in both models.
        their_shapes = {lora.lora_name: tuple(lora.lora_down.weight.shape) for lora in theirs.unet_loras}
        our_shapes = {ours.naming.name(part, path): tuple(module.lora_down.weight.shape)
                      for part in ours.parts() for path, module in ours.lora_layers(part)}
        assert {name: our_shapes[name] for name in their_shapes} == their_shapes
    finally:
        ours.detach()


def _private_copy(components):
    import copy
    import dataclasses

    return dataclasses.replace(components, unet=copy.deepcopy(components.unet),
                               text_encoder=copy.deepcopy(components.text_encoder),
                               text_encoder_2=copy.deepcopy(components.text_encoder_2), _fingerprints={})


def _randomize(network, seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.unet_parameters() + network.text_encoder_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * scale)


def _as_array(image):
    import numpy as np

    return np.asarray(image).astype(np.int16)


@pytest.mark.parametrize("network_args", [{}, {"conv_dim": 4, "conv_alpha": 2}])
def test_diffusers_sdxl_pipeline_loads_every_key_and_draws_what_lrfind_draws(tiny_sdxl, tmp_path, network_args):
    from lrfind.network import build_pipeline, generate_images, save_lora
    from lrfind.network.metadata import modelspec_metadata

    scratch = _private_copy(tiny_sdxl)
    network = attach_network(scratch, NetworkSpec(4, 2.0, train_text_encoder=True, network_args=network_args), seed=0)
    _randomize(network, seed=7, scale=0.2)
    state_dict = network.kohya_state_dict()
    assert {name.split("_")[1] for name in state_dict} == {"unet", "te1", "te2"}
    metadata = modelspec_metadata(title="t", timestamp=0.0, resolution=64, model_family="sdxl")
    path = save_lora(tmp_path / "sdxl.safetensors", state_dict, metadata, "fp32")
    network.detach()
    sample = dict(width=64, height=64, steps=3, guidance_scale=1.0)  # no CFG: no negative prompt involved
    ours = generate_images(tiny_sdxl, ["a cat"], [3], **sample, loras=[(path, 1.0)])[0]
    base = generate_images(tiny_sdxl, ["a cat"], [3], **sample)[0]
    pipeline = build_pipeline(_private_copy(tiny_sdxl))
    # diffusers' kohya converter raises on any key it does not rename: loading = every key consumed
    pipeline.load_lora_weights(str(path))
    theirs = pipeline("a cat", num_inference_steps=3, guidance_scale=1.0, width=64, height=64,
                      generator=torch.Generator().manual_seed(3)).images[0]
    assert abs(_as_array(ours) - _as_array(theirs)).max() <= 1
    assert abs(_as_array(ours) - _as_array(base)).max() > 10
