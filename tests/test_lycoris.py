"""lycoris.kohya networks (LoCon, LoHa, LoKr): built as lycoris builds them, exact detach, files."""

from __future__ import annotations

import copy
import dataclasses
import logging

import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.network import NetworkSpec, applied_loras, attach_network, load_lora, save_lora
from lrfind.network.lycoris_args import check_lycoris_args, resolved_preset

ALGOS = [{"algo": "locon"}, {"algo": "loha"}, {"algo": "lokr", "factor": 4}]
ALGO_IDS = ["locon", "loha", "lokr"]


def spec(args, dim=8, alpha=2.0, text_encoder=True, **kw):
    return NetworkSpec(dim, alpha, train_text_encoder=text_encoder, network_module="lycoris.kohya",
                       network_args=dict(args), **kw)


@pytest.fixture()
def model(tiny):
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                               text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})


def outputs(components):
    g = torch.Generator().manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        return (components.unet(latents, torch.tensor([300]), context).sample,
                components.text_encoder(ids).last_hidden_state)


def randomize(network, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.unet_parameters() + network.text_encoder_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def snapshot(module):
    return ([type(m) for m in module.modules()], {k: v.clone() for k, v in module.state_dict().items()},
            {n: p.requires_grad for n, p in module.named_parameters()}, module.training,
            [sorted(vars(m)) for m in module.modules()], [dict(m._forward_pre_hooks) for m in module.modules()])


def same(a, b):
    types_a, state_a, *rest_a = a
    types_b, state_b, *rest_b = b
    return (types_a == types_b and state_a.keys() == state_b.keys()
            and all(torch.equal(state_a[k], state_b[k]) for k in state_a) and rest_a == rest_b)


def lycoris_reference(components, algo_args, preset):
    """What lycoris.kohya.create_network + apply_to build, called directly: {name: shapes}."""
    from unittest import mock

    import lycoris.kohya as lycoris_kohya
    from lycoris.logging import logger

    cls, level = lycoris_kohya.LycorisNetworkKohya, logger.level
    class_state = {k: v for k, v in vars(cls).items() if k.isupper()}
    logger.setLevel(logging.ERROR)
    try:
        with mock.patch.dict(lycoris_kohya.PRESET, {"reference": preset}):
            network = lycoris_kohya.create_network(1.0, 8, 2.0, components.vae, components.text_encoder,
                                                   components.unet, **algo_args, preset="reference")
        network.apply_to(components.text_encoder, components.unet, True, True)
        shapes = {k: tuple(v.shape) for k, v in network.state_dict().items()}
        for lora in network.loras:
            lora.restore()
    finally:  # create_network leaves its preset in class attributes
        for key, value in class_state.items():
            setattr(cls, key, value)
        logger.setLevel(level)
    # transformers >= 5.6 has no `text_model.` level; lrfind writes kohya's names (see lycoris_net)
    return {k.replace("lora_te_", "lora_te_text_model_", 1): v for k, v in shapes.items()}


@pytest.mark.parametrize("args", ALGOS, ids=ALGO_IDS)
def test_modules_and_shapes_are_lycoris_own(model, args):
    """Preset full: the class TimestepEmbedding dropped (see below), nothing else changes."""
    preset = resolved_preset("full")
    preset["unet_target_module"] = [m for m in preset["unet_target_module"] if m != "TimestepEmbedding"]
    network = attach_network(model, spec(args), seed=0)
    ours = {k: tuple(v.shape) for k, v in network.kohya_state_dict().items()}
    network.detach()
    assert ours == lycoris_reference(model, args, preset)
    names = {k.split(".")[0] for k in ours}
    # lycoris' preset full: also conv_in/conv_out and the time embedding (kohya's never)
    assert {"lora_unet_conv_in", "lora_unet_conv_out", "lora_unet_time_embedding_linear_1",
            "lora_unet_down_blocks_0_resnets_0_conv1", "lora_unet_down_blocks_0_downsamplers_0_conv",
            "lora_te_text_model_encoder_layers_0_mlp_fc1"} <= names


def test_other_presets_match_lycoris_unchanged(model):
    for name in ("attn-mlp", "unet-transformer-only"):
        network = attach_network(model, spec({"algo": "loha", "preset": name}), seed=0) \
            if name == "attn-mlp" else attach_network(model, spec({"algo": "loha", "preset": name},
                                                                  text_encoder=False), seed=0)
        ours = {k: tuple(v.shape) for k, v in network.kohya_state_dict().items()}
        network.detach()
        reference = lycoris_reference(model, {"algo": "loha"}, resolved_preset(name))
        if name != "attn-mlp":
            reference = {k: v for k, v in reference.items() if k.startswith("lora_unet_")}
        assert ours == reference


def test_lycoris_full_preset_names_the_time_embedding_twice(model):
    """Why lrfind drops the class: lycoris-lora 4.1.3 itself stops on SD's UNet with preset full.

    When this fails, lycoris fixed it, and `without_duplicate_targets` can go.
    """
    with pytest.raises(AssertionError, match="duplicated lora name: lora_unet_time_embedding_linear_1"):
        lycoris_reference(model, {"algo": "locon"}, resolved_preset("full"))


def test_conv_dim_defaults_to_dim_and_conv_alpha_to_alpha(model):
    network = attach_network(model, spec({"algo": "locon"}, dim=8, alpha=2.0), seed=0)
    state = network.kohya_state_dict()
    network.detach()
    assert state["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape == (8, 32, 3, 3)
    assert float(state["lora_unet_down_blocks_0_resnets_0_conv1.alpha"]) == 2.0
    network = attach_network(model, spec({"algo": "locon", "conv_dim": 2, "conv_alpha": 1}), seed=0)
    state = network.kohya_state_dict()
    network.detach()
    assert state["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape == (2, 32, 3, 3)
    assert float(state["lora_unet_down_blocks_0_resnets_0_conv1.alpha"]) == 1.0
    assert state["lora_unet_down_blocks_0_resnets_0_time_emb_proj.lora_down.weight"].shape == (8, 128)


@pytest.mark.parametrize("args", ALGOS, ids=ALGO_IDS)
def test_fresh_network_leaves_the_output_and_detach_restores_the_model(model, args):
    base = outputs(model)
    before_unet, before_te = snapshot(model.unet), snapshot(model.text_encoder)
    network = attach_network(model, spec(args), seed=0)
    assert network.trainable_parameter_count() > 0
    assert all(torch.equal(a, b) for a, b in zip(outputs(model), base))
    randomize(network, 1)
    changed = outputs(model)
    assert all(not torch.equal(a, b) for a, b in zip(changed, base))
    network.detach()
    network.detach()  # idempotent
    assert all(torch.equal(a, b) for a, b in zip(outputs(model), base))
    assert same(snapshot(model.unet), before_unet) and same(snapshot(model.text_encoder), before_te)


def test_seeded_init_is_deterministic_and_keeps_the_callers_rng(model):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    states = []
    for _ in range(2):
        network = attach_network(model, spec({"algo": "loha"}), seed=7)
        states.append(network.kohya_state_dict())
        network.detach()
    assert torch.equal(torch.rand(1), expected_next)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = attach_network(model, spec({"algo": "loha"}), seed=8)
    assert not all(torch.equal(states[0][k], v) for k, v in other.kohya_state_dict().items())
    other.detach()


def test_network_mode_follows_the_model_so_dropout_acts_in_training_only(model):
    network = attach_network(model, spec({"algo": "locon", "rank_dropout": 0.5}, text_encoder=False), seed=0)
    randomize(network, 2)
    model.unet.eval()
    first, second = outputs(model)[0], outputs(model)[0]
    assert torch.equal(first, second)
    model.unet.train()
    torch.manual_seed(0)
    assert not torch.equal(outputs(model)[0], first)  # rank dropout drew a mask
    network.detach()


@pytest.mark.parametrize("args,needle", [
    ({"algo": "dora"}, "algo=dora: unknown LyCORIS algo; accepted: locon, loha, lokr"),
    ({"algo": "lokr", "factor": 0}, "factor=0: LoKr cannot factorise by 0; accepted: -1"),
    ({"algo": "lokr", "factor": "x"}, "factor=x: not a number"),
    ({"algo": "loha", "factor": 4}, "only LoKr has a factor"),
    ({"algo": "loha", "block_dims": "2,2"}, "block_dims: not a lycoris.kohya argument"),
    ({"preset": "everything"}, "preset=everything: not a LyCORIS preset; accepted: full, "),
    ({"rank_dropout": 1.5}, "rank_dropout=1.5: a probability"),
    ({"use_tucker": "maybe"}, "use_tucker=maybe: accepted: true, false"),
])
def test_bad_args_are_one_line_config_errors(args, needle):
    with pytest.raises(ConfigError) as error:
        check_lycoris_args(args)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_conv_dim_with_a_preset_without_convs_is_an_error(model):
    with pytest.raises(ConfigError, match="conv_dim=4: LyCORIS preset attn-mlp adapts no convolution"):
        attach_network(model, spec({"algo": "locon", "preset": "attn-mlp", "conv_dim": 4}))
    assert not any(hasattr(m, "_lycoris_wrappers") for m in model.unet.modules())


@pytest.mark.parametrize("args", ALGOS, ids=ALGO_IDS)
def test_file_round_trip_is_bit_exact_and_other_shapes_are_refused(model, args, tmp_path):
    network = attach_network(model, spec(args), seed=0)
    randomize(network, 3)
    state = network.kohya_state_dict()
    network.detach()
    path = save_lora(tmp_path / "n.safetensors", state, {"ss_network_module": "lycoris.kohya"}, "fp32")
    loaded, metadata = load_lora(path)
    assert metadata["ss_network_module"] == "lycoris.kohya"
    fresh = attach_network(model, spec(args), seed=5)
    assert fresh.load_kohya_state_dict(loaded, source=str(path)) == len({k.split(".")[0] for k in state})
    again = fresh.kohya_state_dict()
    fresh.detach()
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)
    for other, needle in ((spec(args, dim=4), "the file was trained with"), (spec(args, alpha=8.0), "--network-alpha"),
                          (spec({"algo": "loha" if args["algo"] != "loha" else "lokr"}), "file, and this network is")):
        network = attach_network(model, other, seed=0)
        with pytest.raises(ConfigError, match=needle):
            network.load_kohya_state_dict(loaded, source=str(path))
        network.detach()


@pytest.mark.parametrize("args", ALGOS + [{"algo": "loha", "use_tucker": "true"}],
                         ids=ALGO_IDS + ["loha-tucker"])
def test_the_sampler_applies_a_saved_file_as_the_live_network(model, args, tmp_path):
    network = attach_network(model, spec(args), seed=0)
    randomize(network, 4, scale=0.3 if args["algo"] == "loha" else 0.05)  # LoHa: products of products
    live = outputs(model)
    path = save_lora(tmp_path / "n.safetensors", network.kohya_state_dict(), {}, "fp32")
    network.detach()
    base = outputs(model)
    with applied_loras(model, [(path, 1.0)]):
        for got, want, plain in zip(outputs(model), live, base):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
            assert (got - plain).abs().max() > 1e-2
    assert all(torch.equal(a, b) for a, b in zip(outputs(model), base))


def _diffusers_pipeline(tiny):
    from lrfind.network import build_pipeline

    return build_pipeline(dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                                              text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={}))


def _file(tiny, tmp_path, algo, scale):
    scratch = dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                                  text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})
    network = attach_network(scratch, spec({"algo": algo}, dim=4), seed=0)
    randomize(network, 6, scale=scale)
    path = save_lora(tmp_path / f"{algo}.safetensors", network.kohya_state_dict(), {}, "fp32")
    network.detach()
    return path


def test_diffusers_loads_a_lycoris_locon_file_as_lrfind_applies_it(tiny, tmp_path):
    import numpy as np

    from lrfind.network import generate_images

    sample = dict(width=64, height=64, steps=4, guidance_scale=5.0)
    path = _file(tiny, tmp_path, "locon", 0.1)
    ours = np.asarray(generate_images(tiny, ["a cat"], [5], **sample, loras=[(path, 1.0)])[0], np.int16)
    base = np.asarray(generate_images(tiny, ["a cat"], [5], **sample)[0], np.int16)
    pipeline = _diffusers_pipeline(tiny)
    pipeline.load_lora_weights(str(path))
    theirs = np.asarray(pipeline("a cat", negative_prompt="", num_inference_steps=4, guidance_scale=5.0,
                                 width=64, height=64, generator=torch.Generator().manual_seed(5)).images[0],
                        np.int16)
    assert np.abs(theirs - base).max() > 10 and np.abs(theirs - ours).max() <= 1


@pytest.mark.parametrize("algo", ["loha", "lokr"])
def test_diffusers_refuses_loha_and_lokr_files(tiny, tmp_path, algo):
    """What docs/networks.md says: diffusers' load_lora_weights takes LoRA and LoCon only."""
    path = _file(tiny, tmp_path, algo, 0.1)
    with pytest.raises(ValueError, match="hada_w1_a|lokr_w1"):
        _diffusers_pipeline(tiny).load_lora_weights(str(path))
