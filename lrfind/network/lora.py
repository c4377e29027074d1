"""kohya sd-scripts' `networks.lora`: the same modules, names, shapes, init and dropouts.

Module rule (kohya's `LoRANetwork.create_modules`): inside every module whose class is one of
the target classes, every nn.Linear and 1x1 nn.Conv2d gets network_dim / network_alpha; with
`conv_dim` (LoCon, kohya's "LoRA-C3Lier") the UNet's target classes add ResnetBlock2D,
Downsample2D and Upsample2D, whose kxk convs get conv_dim / conv_alpha (their time_emb_proj and
1x1 conv_shortcut get network_dim / alpha). conv_in, conv_out and the time embedding are outside
every target class, so never adapted. Text encoder: CLIPAttention / CLIPMLP (q/k/v/out_proj,
fc1, fc2). A LoRAModule (lora_module.py) replaces each adapted layer; `detach()` puts the
original layer objects back, so a study can attach and detach many networks on one model.
SDXL (kohya's networks.lora with an SdxlUNet2DConditionModel): the same classes and rule, both text
encoders adapted when the text encoder trains (`lora_te1_` / `lora_te2_`), the U-Net's modules
named in the SGM layout kohya trains in (naming.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from lrfind.errors import ConfigError, ModelError
from lrfind.network.kohya_format import (
    ALPHA_SUFFIX,
    DOWN_SUFFIX,
    UP_SUFFIX,
    lora_names,
    torch_dtype,
)
from lrfind.network.lora_args import LoraArgs, parse_lora_args
from lrfind.network.naming import KohyaNaming, naming_for, text_encoder_parts
from lrfind.network.spec import LoraSpec, NetworkSpec

UNET_TARGET_CLASSES = ("Transformer2DModel",)
UNET_CONV_TARGET_CLASSES = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TEXT_ENCODER_TARGET_CLASSES = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")

__all__ = ["LoraNetwork", "LoraSpec", "attach_lora", "kohya_lora_targets"]


def kohya_lora_targets(model, part: str, conv: bool = False) -> list[tuple[str, object, bool]]:
    """(module path, layer, is kxk conv) that kohya's networks.lora adapts, in module order.

    As kohya: class names, not isinstance, and the path is `<target>.<child>`. kxk convs are
    listed only with `conv` (LoCon); 1x1 convs count as linear layers.
    """
    classes = TEXT_ENCODER_TARGET_CLASSES if part.startswith("text_encoder") else (
        UNET_TARGET_CLASSES + (UNET_CONV_TARGET_CLASSES if conv else ()))
    found: dict[str, tuple[object, bool]] = {}
    for name, module in model.named_modules():
        if type(module).__name__ not in classes:
            continue
        for child_name, child in module.named_modules():
            kind = type(child).__name__
            if kind not in ("Linear", "Conv2d"):
                continue
            kxk = kind == "Conv2d" and tuple(child.kernel_size) != (1, 1)
            if kxk and not conv:
                continue
            found.setdefault(f"{name}.{child_name}", (child, kxk))
    return [(path, layer, kxk) for path, (layer, kxk) in found.items()]


class LoraNetwork:
    """kohya LoRA modules in an SDComponents' UNet and/or text encoder. Make with `attach_lora`."""

    def __init__(self, components, spec: NetworkSpec, args: LoraArgs, modules: dict,
                 saved_state: dict, naming: KohyaNaming = KohyaNaming()):
        self.components = components
        self.naming = naming
        self.spec = spec
        self.args = args
        self._modules = modules  # part -> [(module path, LoRAModule)]
        self._saved_state = saved_state  # part -> (training flag, {param name: requires_grad})

    @property
    def attached(self) -> bool:
        return bool(self._modules)

    def parts(self) -> tuple[str, ...]:
        return tuple(self._modules)

    def lora_layers(self, part: str) -> Iterator[tuple[str, object]]:
        """(module path, LoRAModule) of one part, in module order."""
        yield from self._modules.get(part, ())

    def _named(self) -> Iterator[tuple[str, object]]:
        for part in self._modules:
            for path, module in self._modules[part]:
                yield self.naming.name(part, path), module

    def module_names(self) -> list[str]:
        return [name for name, _ in self._named()]

    def _parameters(self, part: str, which: tuple[str, ...] = ("lora_down", "lora_up")) -> list:
        return [getattr(module, w).weight for _, module in self.lora_layers(part) for w in which]

    def unet_parameters(self) -> list:
        return self._parameters("unet")

    def _parts_parameters(self, parts: list[str], which: tuple[str, ...] = ("lora_down", "lora_up")) -> list:
        return [p for part in parts for p in self._parameters(part, which)]

    def text_encoder_parameters(self) -> list:
        return self._parts_parameters(self._text_encoder_parts())

    def _text_encoder_parts(self) -> list[str]:
        return [part for part in self._modules if part.startswith("text_encoder")]

    def trainable_parameter_count(self) -> int:
        params = self.unet_parameters() + self.text_encoder_parameters()
        return sum(p.numel() for p in params if p.requires_grad)

    def param_groups(self, unet_lr: float, text_encoder_lr: Optional[float]) -> list[dict]:
        """Optimizer groups with kohya's names; text_encoder_lr None leaves the text encoder out.

        LoRA+ (kohya's `prepare_optimizer_params`): with a ratio, the lora_up weights get their
        own group "<part> plus" at lr x ratio.
        """
        groups = []
        # SDXL: both text encoders' modules in one "textencoder" group, as kohya's prepare_optimizer_params.
        for parts, kind, label, lr in ((["unet"], "unet", "unet", unet_lr),
                                       (self._text_encoder_parts(), "text_encoder", "textencoder", text_encoder_lr)):
            if lr is None or not parts:
                continue
            ratio = self.args.loraplus_ratio(kind)
            if ratio is None:
                groups.append({"params": self._parts_parameters(parts), "lr": lr, "name": label})
                continue
            groups.append({"params": self._parts_parameters(parts, ("lora_down",)), "lr": lr, "name": label})
            groups.append({"params": self._parts_parameters(parts, ("lora_up",)), "lr": lr * ratio,
                           "name": f"{label} plus"})
        return groups

    def detach(self) -> None:
        """Put the original layers back; restore requires_grad and train/eval. Idempotent."""
        restore_layers(self.components, self._modules, self._saved_state)

    def kohya_state_dict(self, dtype="fp32") -> dict:
        """The weights in kohya's layout (lora_down / lora_up / alpha), cast to `dtype`."""
        import torch

        target_dtype = torch_dtype(dtype)
        state_dict = {}
        for name, module in self._named():
            for suffix, weight in ((DOWN_SUFFIX, module.lora_down.weight), (UP_SUFFIX, module.lora_up.weight)):
                state_dict[name + suffix] = weight.detach().to("cpu", target_dtype, copy=True)
            # Written here, not taken from the rank: alpha != dim must survive the round trip.
            state_dict[name + ALPHA_SUFFIX] = torch.tensor(module.alpha, dtype=target_dtype)
        return state_dict

    def load_kohya_state_dict(self, state_dict: dict, source: str = "the LoRA weights") -> int:
        """Load kohya-format weights (e.g. from `--network-weights`); returns modules loaded.

        Every module of the file must exist in this network with the same shape and alpha (a
        silently different alpha would change the scale of every update); nothing is loaded
        otherwise. Modules of the network missing from the file keep their init, as in kohya.
        """
        import torch

        modules = dict(self._named())
        names = lora_names(state_dict)
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise ConfigError(f"{source}: {len(unknown)} LoRA modules (e.g. {unknown[0]}) are not "
                              "in this network; train the same modules (text encoder too? "
                              "--network-args conv_dim?) or start without --network-weights")
        for name in names:
            self._check_module(name, modules[name], state_dict, source)
        with torch.no_grad():
            for name in names:
                modules[name].lora_down.weight.copy_(state_dict[name + DOWN_SUFFIX])
                modules[name].lora_up.weight.copy_(state_dict[name + UP_SUFFIX])
        return len(names)

    def _check_module(self, name: str, module, state_dict: dict, source: str) -> None:
        down, up = state_dict[name + DOWN_SUFFIX], state_dict[name + UP_SUFFIX]
        rank = int(down.shape[0])
        alpha_tensor = state_dict.get(name + ALPHA_SUFFIX)
        alpha = float(alpha_tensor.float().item()) if alpha_tensor is not None else float(rank)
        if module.is_conv_kxk:
            dim_option, alpha_option = "--network-args conv_dim=", "--network-args conv_alpha="
        else:
            dim_option, alpha_option = "--network-dim ", "--network-alpha "
        if rank != module.lora_dim:
            raise ConfigError(f"{source}: LoRA dim {rank} of {name} does not match {dim_option}"
                              f"{module.lora_dim}; set {dim_option}{rank}")
        if tuple(down.shape) != tuple(module.lora_down.weight.shape) or \
                tuple(up.shape) != tuple(module.lora_up.weight.shape):
            raise ConfigError(f"{source}: {name} has shape {tuple(down.shape)} / {tuple(up.shape)}, "
                              f"this network's is {tuple(module.lora_down.weight.shape)} / "
                              f"{tuple(module.lora_up.weight.shape)}; use a LoRA trained for this "
                              "base model, or start without --network-weights")
        if abs(alpha - module.alpha) > 1e-3 * max(1.0, alpha):
            raise ConfigError(f"{source}: LoRA alpha {alpha:g} of {name} does not match "
                              f"{alpha_option}{module.alpha:g}; set {alpha_option}{alpha:g}")


def replace_layer(model, path: str, new) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, new)


def lora_targets(components, spec: NetworkSpec, args: LoraArgs) -> dict:
    """part -> kohya_lora_targets of each part a network of `spec` adapts; a run with none to adapt is refused."""
    targets = {part: kohya_lora_targets(getattr(components, part), part, conv=args.conv_dim is not None)
               for part in _wanted_parts(components, spec)}
    _check_targets(spec, args, targets)
    return targets


def _check_targets(spec: NetworkSpec, args: LoraArgs, targets: dict) -> None:
    if args.conv_dim is not None and not spec.train_unet:
        raise ConfigError(f"--network-args conv_dim={args.conv_dim}: conv_dim adapts the UNet's 3x3 "
                          "convs, and this run trains only the text encoder; drop conv_dim or train the UNet")
    if args.conv_dim is not None and not any(kxk for _, _, kxk in targets.get("unet", ())):
        raise ConfigError(f"--network-args conv_dim={args.conv_dim}: this UNet has no 3x3 convs in "
                          f"{', '.join(UNET_CONV_TARGET_CLASSES)}; drop conv_dim")
    for part, found in targets.items():
        if not found:
            raise ModelError(f"the {part} has none of the modules kohya's networks.lora adapts "
                             "(Transformer2DModel / CLIPAttention / CLIPMLP); use an SD 1.x model")


def attach_lora(components, spec: NetworkSpec, seed: int | None = None) -> LoraNetwork:
    """Attach fresh kohya LoRA modules to the UNet and, if `spec` says so, the text encoder.

    The model is changed in place; `LoraNetwork.detach()` undoes it. With a seed the initial
    lora_down weights are the same every time, and the caller's RNG state is left untouched.
    """
    from lrfind.network.lora_module import LoRAModule  # lazy: it imports torch; lrfind --help loads this

    args = parse_lora_args(spec.network_args)
    targets = lora_targets(components, spec, args)
    saved_state = freeze_parts(components, list(targets), LoRAModule)
    modules = new_lora_modules(components, spec, args, targets, seed)
    for part, found in modules.items():
        for path, module in found:
            replace_layer(getattr(components, part), path, module)
    return LoraNetwork(components, spec, args, modules, saved_state, naming_for(components))


def new_lora_modules(components, spec: NetworkSpec, args: LoraArgs, targets: dict, seed: int | None) -> dict:
    """part -> [(module path, LoRAModule)] for `targets` (kohya_lora_targets per part), not yet in the model.

    Seeded: made under a private RNG state, so a network's initial weights depend on its seed
    alone (a cohort's members get the weights each would get attached alone). Unseeded: drawn from
    (and advancing) the caller's RNG as usual.
    """
    import torch

    from lrfind.network.lora_module import LoRAModule  # lazy: it imports torch; lrfind --help loads this

    modules: dict = {}
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        for part, found in targets.items():
            modules[part] = []
            for path, layer, kxk in found:
                dim, alpha = (args.conv_dim, args.conv_alpha) if kxk else (spec.network_dim, spec.network_alpha)
                modules[part].append((path, LoRAModule(layer, dim, alpha, dropout=spec.network_dropout,
                                                       rank_dropout=args.rank_dropout,
                                                       module_dropout=args.module_dropout,
                                                       mode_source=components.unet)))
    return modules


def _wanted_parts(components, spec: NetworkSpec) -> list[str]:
    """The model parts a network of `spec` adapts: the UNet and/or the text encoder(s)."""
    return (["unet"] if spec.train_unet else []) + (list(text_encoder_parts(components))
                                                    if spec.train_text_encoder else [])


def freeze_parts(components, parts, module_class) -> dict:
    """Freeze the model parts a network adapts; part -> (training flag, {param name: requires_grad}) to restore."""
    saved_state = {}
    for part in parts:
        model = getattr(components, part)
        _refuse_double_attach(model, part, module_class)
        saved_state[part] = (model.training, {n: p.requires_grad for n, p in model.named_parameters()})
        model.requires_grad_(False)
    return saved_state


def restore_layers(components, modules: dict, saved_state: dict) -> None:
    """Put each adapted layer's base layer back (modules: part -> [(path, module with .base_layer)]),
    restore requires_grad and train/eval, and empty `modules`. Idempotent."""
    for part, found in list(modules.items()):
        model = getattr(components, part)
        for path, module in found:
            replace_layer(model, path, module.base_layer)
        training, requires_grad = saved_state[part]
        for name, param in model.named_parameters():
            param.requires_grad_(requires_grad[name])
        model.train(training)
        del modules[part]


def _refuse_double_attach(model, part: str, module_class) -> None:
    if any(isinstance(m, module_class) for m in model.modules()):
        raise RuntimeError(f"the {part} already has LoRA layers; detach() the previous network")
