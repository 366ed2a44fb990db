"""Typed, checked-once configuration: each params.yaml section becomes its component's frozen dataclass.

One mechanism for every section and for the Serve app's arguments: :func:`build` turns a mapping into a dataclass,
rejecting unknown keys, missing required keys and wrong types with the section and key named; the dataclass's own
``__post_init__`` checks ranges. Unknown top-level sections and duplicate keys in the YAML are errors too, so a
typo never silently falls back to a default. (Dataclasses rather than pydantic models: the components already
define them, they import nothing heavy, and this one coercer is all the validation layer there is. Not pydantic's
``TypeAdapter`` on them either: its strict mode refuses the YAML lists tuple fields are written as and the numeric
strings YAML makes of ``1e-4``, and its lax mode turns ``"3"`` into 3 and ``1`` into true, which this rule refuses.)
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = "params.yaml"

# params.yaml section -> the dataclass that owns it ("module:Class", imported only when checked).
SECTIONS: dict[str, str] = {
    "data": "components.data.adapters:IngestConfig",
    "validate": "components.quality.gates:GateConfig",
    "label": "components.labeling.config:LabelConfig",
    "train": "components.training.config:TrainConfig",
    "evaluate": "components.metrics.evaluate:EvalConfig",
    "register": "components.registry.register:RegisterConfig",
    "serve": "components.serving.config:ServeConfig",
    "monitor": "components.quality.drift:MonitorConfig",
}


class ConfigError(ValueError):
    """params.yaml (or an override) does not match the typed config it feeds."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last one silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                              f"(first at line {seen[key] + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    """The raw params mapping: a missing file, a duplicate key or an unknown section is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found (run from the repository root or pass --params)")
    try:
        with path.open() as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader) or {}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; sections are {sorted(SECTIONS)}")
    return data


def section_class(section: str) -> type:
    if section not in SECTIONS:
        raise ConfigError(f"unknown section {section!r}; sections are {sorted(SECTIONS)}")
    module, _, name = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module), name)


def load_params(params: str | os.PathLike | dict = DEFAULT_PARAMS) -> dict[str, Any]:
    """Every section present, each built into its dataclass: the whole file checked at once."""
    data = params if isinstance(params, dict) else read_params(params)
    return {name: build(section_class(name), data[name] or {}, name) for name in SECTIONS if name in data}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return build(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 1e-4 (no dot) as a string; accept numeric strings rather than surprise users.
            try:
                return float(value) if isinstance(value, str) else _fail(where, value, "a number")
            except ValueError:
                _fail(where, value, "a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, value, "an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, value, "true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            _fail(where, value, "a string")
        return value
    return value


def _fail(where: str, value: Any, expected: str):
    raise ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")


def build(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys, missing required keys and bad types raise."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc
    except ValueError as exc:  # __post_init__ checks
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def load_section(cls: type[T], section: str, params: str | os.PathLike | dict = DEFAULT_PARAMS) -> T:
    """Read ``section`` of params.yaml (or an already-read mapping) into ``cls``."""
    data = params if isinstance(params, dict) else read_params(params)
    if section not in data:
        raise ConfigError(f"params has no section '{section}' (sections: {sorted(data)})")
    return build(cls, data[section] or {}, section)
