"""kohya's networks.lora on the tiny model: scale, init, parameter count, attach/detach."""

from __future__ import annotations

import copy
import dataclasses
import gc
import weakref

import pytest
import torch

from lrfind.errors import ConfigError
from lrfind.network import LoraSpec, attach_lora

@pytest.fixture()
def model(tiny):
    """A private copy of the tiny model's UNet and text encoder (the session fixture is shared)."""
    return dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet),
                               text_encoder=copy.deepcopy(tiny.text_encoder), _fingerprints={})


def unet_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    return latents, torch.tensor([500]), context


def unet_output(components):
    with torch.no_grad():
        return components.unet(*unet_inputs()).sample


def te_output(components):
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        return components.text_encoder(ids).last_hidden_state


def randomize(network, seed):
    """Make the network look trained: non-zero up (and down) weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.unet_parameters() + network.text_encoder_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def snapshot(module):
    return (
        [type(m) for m in module.modules()],
        {k: v.clone() for k, v in module.state_dict().items()},
        sum(p.numel() for p in module.parameters()),
        {n: p.requires_grad for n, p in module.named_parameters()},
        module.training,
        sorted(vars(module)),
    )


def assert_same_snapshot(before, after):
    types0, state0, count0, grads0, training0, attrs0 = before
    types1, state1, count1, grads1, training1, attrs1 = after
    assert types1 == types0
    assert list(state1) == list(state0)
    assert all(torch.equal(state0[k], state1[k]) for k in state0)
    assert count1 == count0
    assert grads1 == grads0
    assert training1 == training0
    assert attrs1 == attrs0


def test_trainable_parameter_count_r8_unet(model):
    network = attach_lora(model, LoraSpec(network_dim=8, network_alpha=8))
    # Per Transformer2DModel of width C (context 32, GEGLU ff 4C) at r=8: proj_in/out 2x16C,
    # attn1 4x16C, attn2 2x16C + 2x8(32+C), ff.net.0.proj 8(C+8C), ff.net.2 8(4C+C) = 256C + 512;
    # the tiny UNet has five at C=32 and one at C=64.
    assert network.trainable_parameter_count() == 5 * (256 * 32 + 512) + 256 * 64 + 512 == 60_416
    assert sum(p.numel() for p in network.unet_parameters()) == 60_416
    assert network.text_encoder_parameters() == []
    trainable = [n for n, p in model.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    network.detach()


def test_text_encoder_lora_adds_its_projections_and_mlp(model):
    spec = LoraSpec(network_dim=8, network_alpha=8, train_text_encoder=True)
    network = attach_lora(model, spec)
    # 5 layers x (4 projections x (8x32 down + 32x8 up) + fc1 32->64 + fc2 64->32: 2 x 8 x 96)
    assert sum(p.numel() for p in network.text_encoder_parameters()) == 5 * (4 * 512 + 2 * 768)
    assert network.trainable_parameter_count() == 60_416 + 17_920
    network.detach()


def test_fresh_network_leaves_outputs_unchanged(model):
    base_unet, base_te = unet_output(model), te_output(model)
    network = attach_lora(model, LoraSpec(8, 4, train_text_encoder=True), seed=0)
    for _, layer in network.lora_layers("unet"):
        assert not layer.lora_up.weight.any()  # up: zeros, as kohya
        assert layer.lora_down.weight.abs().sum() > 0  # down: kaiming, not zero
    assert torch.equal(unet_output(model), base_unet)
    assert torch.equal(te_output(model), base_te)
    network.detach()


def test_scale_is_alpha_over_dim(model):
    """At fixed weights a layer's output change is proportional to alpha/dim (kohya's scale)."""
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    x = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    base = model.unet.get_submodule(path)(x).detach()
    deltas = {}
    for alpha in (2.0, 8.0, 16.0):
        network = attach_lora(model, LoraSpec(network_dim=8, network_alpha=alpha), seed=0)
        randomize(network, seed=1)
        layer = dict(network.lora_layers("unet"))[path]
        assert layer.scale == pytest.approx(alpha / 8)
        with torch.no_grad():
            deltas[alpha] = layer(x) - base
        network.detach()
    assert deltas[2.0].abs().max() > 1e-3
    torch.testing.assert_close(deltas[8.0], 4 * deltas[2.0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(deltas[16.0], 8 * deltas[2.0], rtol=1e-5, atol=1e-6)


def test_init_is_deterministic_given_a_seed_and_leaves_caller_rng(model):
    def down_weights(seed):
        network = attach_lora(model, LoraSpec(4, 4), seed=seed)
        weights = [p.detach().clone() for p in network.unet_parameters()[::2]]
        network.detach()
        return weights

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = down_weights(7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG did not move
    again, other = down_weights(7), down_weights(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_twenty_attach_detach_cycles_restore_the_model_exactly(model):
    model.unet.train()  # a state attaching or the trainer might change: must come back as it was
    model.unet.conv_in.weight.requires_grad_(True)
    unet_before, te_before = snapshot(model.unet), snapshot(model.text_encoder)
    base_output = unet_output(model)
    first_layer = None
    for cycle in range(20):
        spec = LoraSpec(network_dim=4 + cycle % 3, network_alpha=2.0,
                        train_text_encoder=cycle % 2 == 1)
        network = attach_lora(model, spec, seed=cycle)
        randomize(network, seed=cycle)
        assert not torch.equal(unet_output(model), base_output)  # the LoRA is really active
        if first_layer is None:
            first_layer = weakref.ref(next(network.lora_layers("unet"))[1])
        network.detach()
        network.detach()  # idempotent
        del network
        assert_same_snapshot(unet_before, snapshot(model.unet))
        assert_same_snapshot(te_before, snapshot(model.text_encoder))
        assert torch.equal(unet_output(model), base_output)
    gc.collect()
    assert first_layer() is None  # the LoRA layers are freed: memory stays flat


def test_only_lora_parameters_get_gradients(model):
    network = attach_lora(model, LoraSpec(8, 8), seed=0)
    randomize(network, seed=2)
    model.unet(*unet_inputs()).sample.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.unet_parameters())
    assert all(p.grad is None for n, p in model.unet.named_parameters() if "lora_" not in n)
    network.detach()


def test_second_attach_without_detach_is_refused(model):
    network = attach_lora(model, LoraSpec(4, 4))
    with pytest.raises(RuntimeError, match="detach"):
        attach_lora(model, LoraSpec(4, 4))
    network.detach()


@pytest.mark.parametrize("dim, alpha, match", [(0, 1, "network-dim"), (8, 0, "network-alpha"),
                                               (8, -1, "network-alpha"), (2.5, 1, "network-dim")])
def test_impossible_specs_are_config_errors(dim, alpha, match):
    with pytest.raises(ConfigError, match=match):
        LoraSpec(network_dim=dim, network_alpha=alpha)
    with pytest.raises(ConfigError, match="neither"):
        LoraSpec(8, 8, train_unet=False, train_text_encoder=False)


def test_text_encoder_only_network(model):
    spec = LoraSpec(4, 4, train_unet=False, train_text_encoder=True)
    network = attach_lora(model, spec)
    assert network.unet_parameters() == [] and network.text_encoder_parameters()
    assert network.parts() == ("text_encoder",)
    network.detach()
