"""argparse options generated from a pydantic config model, and TOML config files.

Each field `foo_bar` becomes `--foo-bar` and kohya's spelling `--foo_bar`; a config whose parts are
nested (TrainConfig) passes its flat table of fields instead (lrfind.training.kohya_names). Options the user did
not give are absent from the result (argparse.SUPPRESS), so the model's own defaults apply and a
TOML file's values are overridden only by what was typed. The result is a plain dict: the caller
builds the validated config object from it.
"""

from __future__ import annotations

import argparse
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from lrfind.errors import ConfigError


def _scalar_type(annotation: Any) -> Any:
    """Unwrap Optional[...] and return the scalar annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # e.g. lrfind.config.Seed: an int with a range check
        return _scalar_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_type(args[0]) if len(args) == 1 else str
    return annotation


def _key_value(text: str) -> tuple[str, Any]:
    """kohya's --optimizer_args "d_coef=2.0" "betas=0.9,0.99" -> typed pairs."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value (e.g. d_coef=2.0, conv_dim=4)")
    key, raw = text.split("=", 1)
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if "," in raw:
            value = [_key_value(f"x={part}")[1] for part in raw.split(",")]
        elif raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            value = raw
    return key.strip(), value


def _fields(model: "type[BaseModel] | Mapping[str, FieldInfo]") -> "Mapping[str, FieldInfo]":
    """A model's fields, or a flat table of fields (option name -> the nested field it sets)."""
    return model if isinstance(model, Mapping) else model.model_fields


def add_model_options(
    parser: argparse.ArgumentParser,
    model: "type[BaseModel] | Mapping[str, FieldInfo]",
    *,
    exclude: Iterable[str] = (),
    aliases: dict[str, list[str]] | None = None,
    help_texts: dict[str, str] | None = None,
) -> None:
    aliases, help_texts, skip = aliases or {}, help_texts or {}, set(exclude)
    for name, field in _fields(model).items():
        if name in skip:
            continue
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else []) + aliases.get(name, [])
        # a field that parses its own text (e.g. lrfind.config.Resolution: "512,512") gets the text
        kind = str if any(isinstance(m, BeforeValidator) for m in field.metadata) else _scalar_type(field.annotation)
        # a required field has no default to show (pydantic's get_default gives PydanticUndefined)
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        help_text = help_texts.get(name, "") + (f" (default: {default})" if default not in (None, {}, ()) else "")
        common = dict(dest=name, default=argparse.SUPPRESS, help=help_text.strip() or None)
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            parser.add_argument(*flags, type=type(choices[0]), choices=choices, **common)
        elif typing.get_origin(kind) is dict:
            parser.add_argument(*flags, nargs="*", type=_key_value, metavar="KEY=VALUE", **common)
        elif typing.get_origin(kind) is tuple:
            element = typing.get_args(kind)[0] if typing.get_args(kind) else int
            parser.add_argument(*flags, nargs="+", type=element, **common)
        else:
            parser.add_argument(*flags, type=kind if kind in (int, float) else str, **common)


def collect_options(args: argparse.Namespace, model: "type[BaseModel] | Mapping[str, FieldInfo]") -> dict[str, Any]:
    values = {}
    fields = _fields(model)
    for name in fields:
        if hasattr(args, name):
            value = getattr(args, name)
            is_dict = typing.get_origin(_scalar_type(fields[name].annotation)) is dict
            values[name] = dict(value) if isinstance(value, list) and is_dict else value
    return values


def read_toml_config(path: str | Path, model: "type[BaseModel] | Mapping[str, FieldInfo]") -> dict[str, Any]:
    """Read a TOML config: flat keys, or kohya's sections ([model_arguments] ...) flattened.

    Dashes in keys are accepted as underscores. Unknown keys are left for the model to reject.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the path given to --config")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the file or pass options on the command line") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key.replace("-", "_") not in _fields(model):
            flat.update({k.replace("-", "_"): v for k, v in value.items()})  # a kohya section
        else:
            flat[key.replace("-", "_")] = value
    for key in ("optimizer_args", "network_args"):  # kohya writes optimizer_args = ["k=v", ...]
        if isinstance(flat.get(key), list):
            try:
                flat[key] = dict(_key_value(str(item)) for item in flat[key])
            except argparse.ArgumentTypeError as err:
                raise ConfigError(f"{path}: {key}: {err}") from None
    return flat
