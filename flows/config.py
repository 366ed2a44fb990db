"""Typed, checked-once configuration: a params.yaml section becomes a component's dataclass.

Unknown keys and wrong types fail here, before any work starts, with the section and key named.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = "params.yaml"


class ConfigError(ValueError):
    """params.yaml (or an override) does not match the typed config it feeds."""


def read_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found (run from the repository root or pass --params)")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


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
