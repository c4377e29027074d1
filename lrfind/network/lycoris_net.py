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
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

from lrfind.errors import ConfigError
from lrfind.network.kohya_format import file_algo, torch_dtype
from lrfind.network.spec import NetworkSpec

NETWORK_MODULE = "lycoris.kohya"
ALGOS = ("locon", "loha", "lokr", "lora")  # lycoris builds the same LoConModule for lora and locon
FILE_LABELS = {"lora": "LoRA/LoCon", "loha": "LoHa", "lokr": "LoKr"}
ALGO_LABELS = {"locon": "LoCon", "lora": "LoCon", "loha": "LoHa", "lokr": "LoKr"}
FLOAT_ARGS = ("conv_alpha", "dropout", "rank_dropout", "module_dropout")
BOOL_ARGS = ("use_tucker", "full_matrix")
ARG_KEYS = ("algo", "preset", "conv_dim", "factor") + FLOAT_ARGS + BOOL_ARGS
DEFAULT_PRESET = "full"  # lycoris.kohya.create_network's default
_BUILD_PRESET = "lrfind-build"  # the name the checked preset is handed to create_network under
# LycorisNetworkKohya's class attribute for each preset key (its `apply_preset`)
_PRESET_ATTRS = {"enable_conv": "ENABLE_CONV", "unet_target_module": "UNET_TARGET_REPLACE_MODULE",
                 "unet_target_name": "UNET_TARGET_REPLACE_NAME",
                 "text_encoder_target_module": "TEXT_ENCODER_TARGET_REPLACE_MODULE",
                 "text_encoder_target_name": "TEXT_ENCODER_TARGET_REPLACE_NAME",
                 "module_algo_map": "MODULE_ALGO_MAP", "name_algo_map": "NAME_ALGO_MAP",
                 "use_fnmatch": "USE_FNMATCH", "exclude_name": "TARGET_EXCLUDE_NAME"}
TEXT_ENCODER_PREFIX = "lora_te_text_model_"
_log = logging.getLogger(__name__)


def spec_algo(spec: NetworkSpec) -> str:
    """The LyCORIS algo of a lycoris.kohya spec (lycoris' own default is plain `lora` = LoCon)."""
    return str(spec.network_args.get("algo", "locon")).lower()


def builtin_presets() -> tuple[str, ...]:
    from lycoris.config import PRESET

    return tuple(PRESET)


def _number(key: str, value, kind, accepted: str):
    try:
        number = kind(value)
        if kind is int and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"--network-args {key}={value}: not a number; accepted: {accepted}") from None
    return number


def check_lycoris_args(args: Mapping[str, Any]) -> dict[str, str]:
    """Validate lycoris.kohya network args; returns them as kohya passes them (strings).

    ConfigError (one line: the argument and what is accepted) for an unknown key or algo, a
    preset that is neither built in nor a .toml file, a LoKr factor that cannot factorise, and
    arguments that would be silently ignored (factor without algo=lokr).
    """
    unknown = sorted(set(args) - set(ARG_KEYS))
    if unknown:
        raise ConfigError(f"--network-args {unknown[0]}: not a lycoris.kohya argument lrfind "
                          f"passes on; accepted: {', '.join(ARG_KEYS)}")
    values = {key: str(value) for key, value in args.items()}
    algo = values.get("algo", "locon").lower()
    if algo not in ALGOS:
        raise ConfigError(f"--network-args algo={values['algo']}: unknown LyCORIS algo; accepted: "
                          f"{', '.join(ALGOS)}")
    if "algo" in values:
        values["algo"] = algo
    preset = values.get("preset", DEFAULT_PRESET)
    if preset not in builtin_presets() and not (preset.endswith(".toml") and Path(preset).is_file()):
        raise ConfigError(f"--network-args preset={preset}: not a LyCORIS preset; accepted: "
                          f"{', '.join(builtin_presets())} or the path of a preset .toml file")
    if "conv_dim" in values and _number("conv_dim", values["conv_dim"], int, "a whole number >= 1") < 1:
        raise ConfigError(f"--network-args conv_dim={values['conv_dim']}: must be >= 1")
    for key in FLOAT_ARGS:
        if key in values and _number(key, values[key], float, "a number") < 0:
            raise ConfigError(f"--network-args {key}={values[key]}: must be >= 0")
    for key in ("dropout", "rank_dropout", "module_dropout"):
        if key in values and float(values[key]) >= 1:
            raise ConfigError(f"--network-args {key}={values[key]}: a probability; accepted: 0 <= p < 1")
    for key in BOOL_ARGS:
        if key in values and values[key].lower() not in ("true", "false"):
            raise ConfigError(f"--network-args {key}={values[key]}: accepted: true, false")
    if "factor" in values:
        if algo != "lokr":
            raise ConfigError(f"--network-args factor={values['factor']}: only LoKr has a factor; "
                              "add algo=lokr or drop factor")
        factor = _number("factor", values["factor"], int, "-1 (automatic) or a whole number >= 2")
        if factor != -1 and factor < 2:
            raise ConfigError(f"--network-args factor={values['factor']}: LoKr cannot factorise by "
                              f"{factor}; accepted: -1 (automatic) or a whole number >= 2")
    return values


def resolved_preset(name: str) -> dict:
    """The preset dict lycoris applies for `name` (built in, or read from a .toml file)."""
    import copy

    from lycoris.config import PRESET
    from lycoris.utils.preset import read_preset

    preset = copy.deepcopy(PRESET[name]) if name in PRESET else read_preset(name)
    if preset is None:
        raise ConfigError(f"--network-args preset={name}: the preset file does not parse as a "
                          "LyCORIS preset; fix it or use a built-in preset")
    return preset


def without_duplicate_targets(preset: dict, unet) -> dict:
    """Drop target classes whose every adaptable layer is already selected by a target name.

    See the module docstring: lycoris 4.1.3's `full` names SD's time embedding twice.
    """
    import torch

    names = set(preset.get("unet_target_name") or ())
    classes = list(preset.get("unet_target_module") or ())
    for class_name in list(classes):
        instances = [(path, m) for path, m in unet.named_modules() if type(m).__name__ == class_name]
        layers = [f"{path}.{child}" for path, module in instances
                  for child, sub in module.named_modules()
                  if child and isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d))]
        if instances and layers and all(layer in names for layer in layers):
            classes.remove(class_name)
    return {**preset, "unet_target_module": classes}


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


def create_lycoris_kohya(components, spec: NetworkSpec):
    """`lycoris.kohya.create_network` exactly as kohya's train_network.py calls it (not applied).

    Text-encoder modules are renamed `lora_te_text_model_...`: transformers >= 5.6 dropped the
    `text_model.` level of CLIPTextModel that kohya (on transformers 4) and every loader expect.
    """
    args = check_lycoris_args(spec.network_args)
    preset = without_duplicate_targets(resolved_preset(args.get("preset", DEFAULT_PRESET)),
                                        components.unet)
    kwargs: dict[str, Any] = {**args, "preset": _BUILD_PRESET}
    if "dropout" not in kwargs:  # kohya: "workaround for LyCORIS"
        kwargs["dropout"] = spec.network_dropout
    with _pristine_lycoris_kohya(preset) as lycoris_kohya:
        network = lycoris_kohya.create_network(
            1.0, spec.network_dim, spec.network_alpha, components.vae, components.text_encoder,
            components.unet, neuron_dropout=spec.network_dropout, **kwargs)
        conv_enabled = lycoris_kohya.LycorisNetworkKohya.ENABLE_CONV
    if "conv_dim" in args and not conv_enabled:
        raise ConfigError(f"--network-args conv_dim={args['conv_dim']}: LyCORIS preset "
                          f"{args.get('preset', DEFAULT_PRESET)} adapts no convolution; drop conv_dim "
                          "or use preset full")
    for lora in network.text_encoder_loras:
        if not lora.lora_name.startswith(TEXT_ENCODER_PREFIX):
            lora.lora_name = TEXT_ENCODER_PREFIX + lora.lora_name.removeprefix("lora_te_")
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
        return tuple(part for part in ("unet", "text_encoder") if part in self._saved_state)

    def _loras(self, part: str) -> list:
        if self._network is None:
            return []
        return list(self._network.unet_loras if part == "unet" else self._network.text_encoder_loras)

    def module_names(self, part: str | None = None) -> list[str]:
        """The LyCORIS names of the adapted layers (of one part, or all), in module order."""
        parts = self.parts() if part is None else (part,)
        return [lora.lora_name for name in parts for lora in self._loras(name)]

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
        return [p for lora in self._loras("text_encoder") for p in lora.parameters()]

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
        network = create_lycoris_kohya(components, spec)
    wanted = {"unet": spec.train_unet, "text_encoder": spec.train_text_encoder}
    saved_state = {}
    for part in ("text_encoder", "unet"):
        model = getattr(components, part)
        if wanted[part]:
            saved_state[part] = (model.training, {n: p.requires_grad for n, p in model.named_parameters()})
    _refuse_double_attach(components)
    with _quiet_lycoris():
        network.apply_to(components.text_encoder, components.unet,
                         apply_text_encoder=spec.train_text_encoder, apply_unet=spec.train_unet)
    for part in saved_state:
        if not (network.unet_loras if part == "unet" else network.text_encoder_loras):
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
    for model in (components.unet, components.text_encoder):
        if any(hasattr(m, "_lycoris_wrappers") for m in model.modules()):
            raise RuntimeError("the model already has a LyCORIS network; detach() the previous one")
