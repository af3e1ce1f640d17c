"""One config system: dataclasses, loaded from YAML, overridden with ``key=value``.

Every config in xling is a (possibly nested) dataclass. Field help lives in
``field(metadata={"help": ...})`` or a comment. :func:`from_dict` builds a
dataclass from a plain dict and rejects unknown keys with the nearest valid
names; :func:`apply_overrides` applies ``a.b.c=value`` strings (values parsed as
YAML, so ``lr=3e-4``, ``langs=[en,de]`` and ``pre_norm=false`` all work). Float fields
must be finite (``nan`` / ``inf`` are errors). A field typed ``Annotated[T, check]`` is
validated by ``check(value, where)`` (e.g. :data:`xling.tokenization.langs.Lang`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from xling.errors import XlingError, unknown

T = TypeVar("T")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    tp = _unwrap_optional(tp)
    if value is None:
        return None
    if typing.get_origin(tp) is typing.Annotated:  # Annotated[T, check, ...]: check(value, where) validates
        base, *checks = typing.get_args(tp)
        value = _convert(value, base, where)
        for check in checks:
            if callable(check):
                check(value, f"config {where}")
        return value
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise XlingError(f"config {where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, prefix=f"{where}.")
    origin = typing.get_origin(tp)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(tp)
        inner = args[1] if len(args) == 2 else Any
        return {k: _convert(v, inner, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise XlingError(f"config {where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise XlingError(f"config {where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error naming the key."""
    if data is None:
        data = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise unknown("config key", f"{prefix}{key}", [f"{prefix}{n}" for n in names])
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required field
        raise XlingError(f"config {prefix or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass as a plain dict (YAML/JSON-ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides or []:
        if "=" not in item:
            raise XlingError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            first = " ".join(str(e).split())  # one line: YAML's messages span several
            raise XlingError(f"--set {item!r}: the value is not valid YAML ({first})") from None
        if not key.strip() or any(not p for p in key.strip().split(".")):
            raise XlingError(f"--set {item!r}: expected key=value with a dotted key like trainer.lr")
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise XlingError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise XlingError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise XlingError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from None
    except UnicodeDecodeError:
        raise XlingError(f"{path}: invalid UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise XlingError(f"{path}: expected a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file plus ``key=value`` overrides."""
    data = load_yaml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)
