"""The trainable LoRA network: peft LoRA layers on the UNet (and text encoder) with kohya's semantics.

kohya's LoRA and peft's agree on everything that matters here: output = W x + (alpha/r) B A x,
A ("lora_down") kaiming-uniform(a=sqrt(5)) initialised, B ("lora_up") zero-initialised, so a freshly
attached network leaves the model's output unchanged. peft supplies the layers; this module adds
kohya's file layout and a `detach()` that puts the model back exactly as it was, so a study can
attach and detach many networks on one loaded model.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from lrfind.errors import ConfigError
from lrfind.network.kohya_format import (
    ALPHA_SUFFIX,
    DOWN_SUFFIX,
    UP_SUFFIX,
    kohya_module_name,
    lora_names,
    read_dim_and_alpha,
    torch_dtype,
)
from lrfind.network.spec import LoraSpec, NetworkSpec

ADAPTER_NAME = "lrfind"
UNET_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")


class LoraNetwork:
    """LoRA layers attached to an SDComponents' UNet and/or text encoder. Make with `attach_lora`."""

    def __init__(self, components, spec: NetworkSpec, tuners: dict, saved_state: dict):
        self.components = components
        self.spec = spec
        self._tuners = tuners  # part ("unet" / "text_encoder") -> peft LoraModel
        self._saved_state = saved_state  # part -> (training flag, {param name: requires_grad})

    @property
    def attached(self) -> bool:
        return bool(self._tuners)

    def parts(self) -> tuple[str, ...]:
        return tuple(self._tuners)

    def lora_layers(self, part: str) -> Iterator[tuple[str, object]]:
        """(module path, peft LoraLayer) of one part, in module order."""
        from peft.tuners.lora import LoraLayer

        if part not in self._tuners:
            return
        for path, module in getattr(self.components, part).named_modules():
            if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A:
                yield path, module

    def _parameters(self, part: str) -> list:
        params = []
        for _, layer in self.lora_layers(part):
            params += [layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight]
        return params

    def unet_parameters(self) -> list:
        return self._parameters("unet")

    def text_encoder_parameters(self) -> list:
        return self._parameters("text_encoder")

    def module_names(self) -> list[str]:
        return [kohya_module_name(part, path) for part in self._tuners for path, _ in self.lora_layers(part)]

    def param_groups(self, unet_lr: float, text_encoder_lr: Optional[float]) -> list[dict]:
        """Optimizer groups with kohya's names; text_encoder_lr None leaves the text encoder out."""
        groups = [{"params": self.unet_parameters(), "lr": unet_lr, "name": "unet"}]
        if text_encoder_lr is not None:
            groups.append({"params": self.text_encoder_parameters(), "lr": text_encoder_lr,
                           "name": "textencoder"})
        return groups

    def trainable_parameter_count(self) -> int:
        params = self.unet_parameters() + self.text_encoder_parameters()
        return sum(p.numel() for p in params if p.requires_grad)

    def detach(self) -> None:
        """Remove every LoRA layer: the UNet / text encoder get back their original modules.

        peft's `delete_adapter` leaves `base_layer` wrappers behind; `LoraModel.unload()` puts the
        original module objects back in place (and removes `peft_config`). requires_grad flags and
        train/eval mode, which peft and the trainer change, are restored too. Idempotent.
        """
        for part, tuner in list(self._tuners.items()):
            model = getattr(self.components, part)
            tuner.unload()
            training, requires_grad = self._saved_state[part]
            for name, param in model.named_parameters():
                param.requires_grad_(requires_grad[name])
            model.train(training)
            del self._tuners[part]

    def kohya_state_dict(self, dtype="fp32") -> dict:
        """The weights in kohya's layout (lora_down / lora_up / alpha), cast to `dtype`."""
        import torch

        target_dtype = torch_dtype(dtype)
        state_dict = {}
        for part in self._tuners:
            for path, layer in self.lora_layers(part):
                name = kohya_module_name(part, path)
                down = layer.lora_A[ADAPTER_NAME].weight.detach()
                up = layer.lora_B[ADAPTER_NAME].weight.detach()
                state_dict[name + DOWN_SUFFIX] = down.to("cpu", target_dtype, copy=True)
                state_dict[name + UP_SUFFIX] = up.to("cpu", target_dtype, copy=True)
                # Written here, not taken from the rank: alpha != dim must survive the round trip.
                state_dict[name + ALPHA_SUFFIX] = torch.tensor(
                    float(self.spec.network_alpha), dtype=target_dtype)
        return state_dict

    def load_kohya_state_dict(self, state_dict: dict, source: str = "the LoRA weights") -> int:
        """Load kohya-format weights (e.g. from `--network-weights`); returns modules loaded.

        dim and alpha must match this network's: a silently different alpha would change the
        scale of every update. Modules of the network missing from the file keep their
        initialisation (as kohya does); modules in the file the network lacks are an error.
        """
        import torch

        dim, alpha = read_dim_and_alpha(state_dict)
        if dim != self.spec.network_dim:
            raise ConfigError(f"{source}: LoRA dim {dim} does not match --network-dim "
                              f"{self.spec.network_dim}; set --network-dim {dim}")
        if abs(alpha - self.spec.network_alpha) > 1e-3 * max(1.0, alpha):
            raise ConfigError(f"{source}: LoRA alpha {alpha:g} does not match --network-alpha "
                              f"{self.spec.network_alpha:g}; set --network-alpha {alpha:g}")
        layers = {kohya_module_name(part, path): layer
                  for part in self._tuners for path, layer in self.lora_layers(part)}
        unknown = [name for name in lora_names(state_dict) if name not in layers]
        if unknown:
            raise ConfigError(f"{source}: {len(unknown)} LoRA modules (e.g. {unknown[0]}) are not "
                              "in this network; train the same modules (text encoder too?) or "
                              "start without --network-weights")
        with torch.no_grad():
            for name in lora_names(state_dict):
                layer = layers[name]
                layer.lora_A[ADAPTER_NAME].weight.copy_(state_dict[name + DOWN_SUFFIX])
                layer.lora_B[ADAPTER_NAME].weight.copy_(state_dict[name + UP_SUFFIX])
        return len(lora_names(state_dict))


def attach_lora(components, spec: LoraSpec, seed: int | None = None) -> LoraNetwork:
    """Attach fresh LoRA layers (peft) to the UNet and, if `spec` says so, the text encoder.

    The model is changed in place; `LoraNetwork.detach()` undoes it. With a seed the initial
    lora_down weights are the same every time, and the caller's RNG state is left untouched.
    """
    import torch
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    targets = {"unet": UNET_TARGET_MODULES, "text_encoder": TEXT_ENCODER_TARGET_MODULES}
    wanted = {"unet": spec.train_unet, "text_encoder": spec.train_text_encoder}
    tuners, saved_state = {}, {}
    # Seeded: a private RNG state. Unseeded: draw from (and advance) the caller's RNG as usual.
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        for part in ("unet", "text_encoder"):
            if not wanted[part]:
                continue
            model = getattr(components, part)
            _refuse_double_attach(model, part)
            saved_state[part] = (model.training,
                                 {n: p.requires_grad for n, p in model.named_parameters()})
            config = LoraConfig(
                r=spec.network_dim,
                lora_alpha=spec.network_alpha,
                target_modules=list(targets[part]),
                lora_dropout=0.0,
                bias="none",
                init_lora_weights=True,  # A kaiming-uniform(a=sqrt(5)), B zeros: as kohya
            )
            tuners[part] = LoraModel(model, config, ADAPTER_NAME)
    return LoraNetwork(components, spec, tuners, saved_state)


def _refuse_double_attach(model, part: str) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(isinstance(m, BaseTunerLayer) for m in model.modules()):
        raise RuntimeError(f"the {part} already has LoRA layers; detach() the previous network")
