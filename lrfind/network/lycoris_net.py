"""LyCORIS networks (LoCon, LoHa, LoKr), built by the lycoris-lora package as kohya builds them.

`--network-module lycoris.kohya --network-args algo=loha ...` in kohya sd-scripts calls
`lycoris.kohya.create_network(1.0, dim, alpha, vae, text_encoder, unet, neuron_dropout=...,
dropout=..., **network_args)` and then `network.apply_to(text_encoder, unet, train_te, train_unet)`.
lrfind makes the same two calls, so the adapted modules, their shapes, initialisation and forward
are LyCORIS's own (no LoHa/LoKr maths here), and the file is LyCORIS's `network.state_dict()`.

Two things are added around those calls:
- lycoris keeps its preset in class attributes that each `create_network` only partly overwrites;
  they are reset to the package defaults around every build, so one build never leaks into the
  next (as in kohya, where each run is a fresh process).
- lycoris 4.1.3's preset `full` lists the class `TimestepEmbedding` *and* the names
  `time_embedding.linear_1/_2`; on SD's UNet both select the same two Linears and create_network
  stops on "duplicated lora name". The class is dropped from the preset when the names already
  cover every layer it would adapt, which builds exactly the modules the preset asks for.

SDXL: kohya's sdxl_train_network.py hands create_network both text encoders as a list (lycoris
names them `lora_te1_` / `lora_te2_`) and its own U-Net in the SGM layout; lrfind hands it the same
list and a view of its diffusers U-Net in that layout (lycoris_sgm), so the modules lycoris selects
and their names (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`) are kohya's.
Args and presets are checked in lycoris_args.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Iterator

from lrfind.errors import ConfigError
from lrfind.network.kohya_format import file_algo, torch_dtype
from lrfind.network.lycoris_args import (
    ALGO_LABELS,
    DEFAULT_PRESET,
    FILE_LABELS,
    check_lycoris_args,
    resolved_preset,
    spec_algo,
    without_duplicate_targets,
)
from lrfind.network.lycoris_sgm import sgm_view
from lrfind.network.naming import has_two_text_encoders, text_encoder_parts
from lrfind.network.spec import NetworkSpec

_BUILD_PRESET = "lrfind-build"  # the name the checked preset is handed to create_network under
# LycorisNetworkKohya's class attribute for each preset key (its `apply_preset`)
_PRESET_ATTRS = {"enable_conv": "ENABLE_CONV", "unet_target_module": "UNET_TARGET_REPLACE_MODULE",
                 "unet_target_name": "UNET_TARGET_REPLACE_NAME",
                 "text_encoder_target_module": "TEXT_ENCODER_TARGET_REPLACE_MODULE",
                 "text_encoder_target_name": "TEXT_ENCODER_TARGET_REPLACE_NAME",
                 "module_algo_map": "MODULE_ALGO_MAP", "name_algo_map": "NAME_ALGO_MAP",
                 "use_fnmatch": "USE_FNMATCH", "exclude_name": "TARGET_EXCLUDE_NAME"}
# lycoris' text-encoder prefix -> the part it names (SDXL: a list of two encoders, numbered)
TEXT_ENCODER_PREFIXES = {"lora_te_": "text_encoder", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_lycoris() -> Iterator[None]:
    """lycoris logs INFO lines to stdout and LoHa/LoKr print() a dropout warning: library code in
    lrfind does not print, so both go to lrfind's log instead."""
    from lycoris.logging import logger as lycoris_logger

    level = lycoris_logger.level
    lycoris_logger.setLevel(logging.ERROR)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        lycoris_logger.setLevel(level)
        if printed.getvalue().strip():
            _log.info("lycoris: %s", printed.getvalue().strip())


@contextlib.contextmanager
def _pristine_lycoris_kohya(preset: dict) -> Iterator[Any]:
    """lycoris.kohya with its class-level preset state at the package defaults, `preset` registered."""
    from unittest import mock

    import lycoris.kohya as lycoris_kohya

    cls = lycoris_kohya.LycorisNetworkKohya
    try:
        for attr, value in _class_defaults().items():
            setattr(cls, attr, value)
        with mock.patch.dict(lycoris_kohya.PRESET, {_BUILD_PRESET: preset}), _quiet_lycoris():
            yield lycoris_kohya
    finally:
        for attr, value in _class_defaults().items():
            setattr(cls, attr, value)


def _class_defaults() -> dict[str, Any]:
    """LycorisNetworkKohya's class attributes as the package defines them: preset `full`'s
    targets (the class body's lists) and no maps, fnmatch or exclusions."""
    import copy

    from lycoris.config import PRESET

    defaults = {"module_algo_map": {}, "name_algo_map": {}, "use_fnmatch": False, "exclude_name": [],
                **copy.deepcopy(PRESET["full"])}
    return {_PRESET_ATTRS[key]: value for key, value in defaults.items()}


def lycoris_models(components) -> tuple[Any, Any]:
    """(text_encoder, unet) as kohya hands them to lycoris: SD 1.x's own; SDXL's two encoders as a
    list and its U-Net in kohya's SGM layout (a view of lrfind's, lycoris_sgm)."""
    if not has_two_text_encoders(components):
        return components.text_encoder, components.unet
    return ([components.text_encoder, components.text_encoder_2],
            sgm_view(components.unet))


def _text_encoder_prefix(lora_name: str) -> str:
    return next(prefix for prefix in TEXT_ENCODER_PREFIXES if lora_name.startswith(prefix))


def kohya_text_encoder_name(lora_name: str) -> str:
    """`lora_te1_encoder_layers_0_...` -> `lora_te1_text_model_encoder_layers_0_...`: transformers
    >= 5.6 dropped the `text_model.` level of CLIPTextModel that kohya (on transformers 4) and every
    loader expect."""
    prefix = _text_encoder_prefix(lora_name)
    if lora_name.startswith(prefix + "text_model_"):
        return lora_name
    return prefix + "text_model_" + lora_name[len(prefix):]


def create_lycoris_kohya(components, spec: NetworkSpec, models: tuple[Any, Any] | None = None):
    """`lycoris.kohya.create_network` exactly as kohya's train_network.py calls it (not applied),
    with kohya's text-encoder names (kohya_text_encoder_name). `models`: lycoris_models(components)."""
    args = check_lycoris_args(spec.network_args)
    text_encoder, unet = models or lycoris_models(components)
    preset = without_duplicate_targets(resolved_preset(args.get("preset", DEFAULT_PRESET)), unet)
    kwargs: dict[str, Any] = {**args, "preset": _BUILD_PRESET}
    if "dropout" not in kwargs:  # kohya: "workaround for LyCORIS"
        kwargs["dropout"] = spec.network_dropout
    with _pristine_lycoris_kohya(preset) as lycoris_kohya:
        network = lycoris_kohya.create_network(
            1.0, spec.network_dim, spec.network_alpha, components.vae, text_encoder, unet,
            neuron_dropout=spec.network_dropout, **kwargs)
        conv_enabled = lycoris_kohya.LycorisNetworkKohya.ENABLE_CONV
    if "conv_dim" in args and not conv_enabled:
        raise ConfigError(f"--network-args conv_dim={args['conv_dim']}: LyCORIS preset "
                          f"{args.get('preset', DEFAULT_PRESET)} adapts no convolution; drop conv_dim "
                          "or use preset full")
    for lora in network.text_encoder_loras:
        lora.lora_name = kohya_text_encoder_name(lora.lora_name)
    return network


class LycorisKohyaNetwork:
    """A lycoris.kohya network applied to an SDComponents. Make with `attach_lycoris`.

    Same protocol as LoraNetwork: parts, unet/text_encoder_parameters, detach, kohya_state_dict,
    load_kohya_state_dict. lycoris replaces each adapted layer's `forward` by its own module's;
    detach restores them and removes everything lrfind or lycoris put on the model.
    """

    def __init__(self, components, spec: NetworkSpec, network, saved_state: dict, hooks: list):
        self.components = components
        self.spec = spec
        self._network = network
        self._saved_state = saved_state  # part -> (training flag, {param name: requires_grad})
        self._hooks = hooks

    @property
    def attached(self) -> bool:
        return self._network is not None

    @property
    def label(self) -> str:
        return ALGO_LABELS[spec_algo(self.spec)]

    def parts(self) -> tuple[str, ...]:
        return tuple(self._saved_state)

    def lycoris_modules(self, part: str | None = None) -> list:
        """lycoris' modules (LohaModule, LokrModule, ...; each has its `lora_name`) of one part, or
        all, in module order."""
        if part is None:
            return [module for name in self.parts() for module in self._loras(name)]
        return self._loras(part)

    def _loras(self, part: str) -> list:
        if self._network is None:
            return []
        if part == "unet":
            return list(self._network.unet_loras)
        return [lora for lora in self._network.text_encoder_loras
                if TEXT_ENCODER_PREFIXES[_text_encoder_prefix(lora.lora_name)] == part]

    def module_names(self, part: str | None = None) -> list[str]:
        """The LyCORIS names of the adapted layers (of one part, or all), in module order."""
        return [lora.lora_name for lora in self.lycoris_modules(part)]

    def param_groups(self, unet_lr: float, text_encoder_lr: float | None) -> list[dict]:
        """Optimizer groups with kohya's names (as lycoris' prepare_optimizer_params names them)."""
        groups = [{"params": self.unet_parameters(), "lr": unet_lr, "name": "unet"}]
        if text_encoder_lr is not None and self.text_encoder_parameters():
            groups.append({"params": self.text_encoder_parameters(), "lr": text_encoder_lr,
                           "name": "textencoder"})
        return groups

    def unet_parameters(self) -> list:
        return [p for lora in self._loras("unet") for p in lora.parameters()]

    def text_encoder_parameters(self) -> list:
        """Both encoders' on SDXL (one "textencoder" group, as lycoris' prepare_optimizer_params)."""
        return [p for lora in self._network.text_encoder_loras for p in lora.parameters()] if self._network else []

    def trainable_parameter_count(self) -> int:
        params = self.unet_parameters() + self.text_encoder_parameters()
        return sum(p.numel() for p in params if p.requires_grad)

    def detach(self) -> None:
        """Give every adapted layer its own forward back; restore flags and modes. Idempotent."""
        if self._network is None:
            return
        for handle in self._hooks:
            handle.remove()
        for lora in self._network.loras:
            module = lora.org_module[0]
            lora.restore()
            # lycoris' restore() leaves the original bound method as an instance attribute.
            if module.__dict__.get("forward") == type(module).forward.__get__(module):
                del module.__dict__["forward"]
        for part, (training, requires_grad) in self._saved_state.items():
            model = getattr(self.components, part)
            for name, param in model.named_parameters():
                param.requires_grad_(requires_grad[name])
            model.train(training)
        self._network, self._hooks = None, []

    def kohya_state_dict(self, dtype="fp32") -> dict:
        """LyCORIS's own state dict (kohya's save_weights), tensors cast to `dtype` on the CPU."""
        target_dtype = torch_dtype(dtype)
        if self._network is None:
            return {}
        return {key: value.detach().to("cpu", target_dtype, copy=True)
                for key, value in self._network.state_dict().items()}

    def load_kohya_state_dict(self, state_dict: dict, source: str = "the network weights") -> int:
        """Load LyCORIS-format weights (e.g. `--network-weights`); returns modules loaded.

        Every tensor must be one this network has, with its shape (so another algo, dim, factor or
        module set is an error naming the first mismatch); alpha must match, since a different
        alpha would silently rescale every update. Modules missing from the file keep their
        initialisation, as kohya's `load_weights(strict=False)` leaves them.
        """
        import torch

        in_file, ours = file_algo(state_dict), file_algo(self._network.state_dict())
        if in_file != ours:
            raise ConfigError(f"{source}: a {FILE_LABELS[in_file]} file, and this network is "
                              f"{self.label}; set --network-args algo={in_file if in_file != 'lora' else 'locon'} "
                              "(with the dims it was trained with), or start without --network-weights")
        own = self._network.state_dict()
        unknown = [key for key in state_dict if key not in own]
        if unknown:
            raise ConfigError(f"{source}: {unknown[0]} is not a tensor of this {self.label} network "
                              f"({len(unknown)} such); set the --network-dim, --network-args and "
                              "text-encoder training the file was trained with, or start without "
                              "--network-weights")
        for key, value in state_dict.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ConfigError(f"{source}: {key} has shape {tuple(value.shape)}, this network "
                                  f"{tuple(own[key].shape)}; set the --network-dim and --network-args "
                                  "the file was trained with")
            if key.endswith(".alpha") and abs(float(value) - float(own[key])) > 1e-3 * max(1.0, abs(float(own[key]))):
                raise ConfigError(f"{source}: {key} is {float(value):g}, this network's "
                                  f"{float(own[key]):g}; set --network-alpha / conv_alpha as trained")
        with torch.no_grad():
            self._network.load_state_dict(state_dict, strict=False)
        return len({key.split(".", 1)[0] for key in state_dict})


def attach_lycoris(components, spec: NetworkSpec, seed: int | None = None) -> LycorisKohyaNetwork:
    """Build a lycoris.kohya network and apply it to the UNet (and text encoder if asked).

    With a seed the initial weights are the same every time, and the caller's RNG state is left
    untouched. The network's train/eval mode follows the model it adapts (kohya calls
    network.train() itself; lrfind's loop switches the UNet), so rank/module dropout act in
    training only.
    """
    import torch

    if not (spec.train_unet or spec.train_text_encoder):
        raise ConfigError("the network trains neither the UNet nor the text encoder; enable one")
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        models = lycoris_models(components)
        network = create_lycoris_kohya(components, spec, models)
    wanted = (["unet"] if spec.train_unet else []) + (list(text_encoder_parts(components))
                                                      if spec.train_text_encoder else [])
    saved_state = {}
    for part in wanted:
        model = getattr(components, part)
        saved_state[part] = (model.training, {n: p.requires_grad for n, p in model.named_parameters()})
    _refuse_double_attach(components)
    with _quiet_lycoris():
        network.apply_to(*models, apply_text_encoder=spec.train_text_encoder, apply_unet=spec.train_unet)
    adapted = {TEXT_ENCODER_PREFIXES[_text_encoder_prefix(lora.lora_name)] for lora in network.text_encoder_loras}
    for part in saved_state:
        if not (network.unet_loras if part == "unet" else part in adapted):
            _undo_apply(network)
            raise ConfigError(f"--network-args preset={spec.network_args.get('preset', DEFAULT_PRESET)}: "
                              f"adapts no layer of the {part.replace('_', ' ')}; use preset full")
    device = components.unet.device
    network.to(device)
    network.requires_grad_(True)
    hooks = [getattr(components, part).register_forward_pre_hook(_follow_mode(network))
             for part in saved_state]
    return LycorisKohyaNetwork(components, spec, network, saved_state, hooks)


def _follow_mode(network):
    def hook(model, _inputs):
        if network.training != model.training:
            network.train(model.training)
    return hook


def _undo_apply(network) -> None:
    for lora in network.loras:
        module = lora.org_module[0]
        lora.restore()
        if "forward" in module.__dict__:
            del module.__dict__["forward"]


def _refuse_double_attach(components) -> None:
    for model in (components.unet, components.text_encoder, components.text_encoder_2):
        if model is not None and any(hasattr(m, "_lycoris_wrappers") for m in model.modules()):
            raise RuntimeError("the model already has a LyCORIS network; detach() the previous one")
