"""Backend options from ``-o key=value`` strings, typed and checked by the backend's dataclass."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable

from ..errors import OptionError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _describe(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args and _is_optional(tp):
        return f"{args[0].__name__} or none"
    return getattr(tp, "__name__", str(tp))


def _is_optional(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(tp)


def _convert(key: str, raw: str, tp: Any) -> Any:
    if _is_optional(tp):
        if raw.lower() in ("none", "null", ""):
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    try:
        if tp is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is str:
            return raw
    except ValueError:
        pass
    else:
        raise OptionError(f"option {key}: unsupported type {tp!r}")
    raise OptionError(f"option {key} expects {_describe(tp)}, got {raw!r}")


def accepted(cls: type) -> str:
    return ", ".join(f"{k} ({_describe(t)})" for k, t in _field_types(cls).items())


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"option {pair!r} is not key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def build_options(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate the options dataclass ``cls`` from strings or typed values, checking keys."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in types_:
            raise OptionError(f"unknown option {key!r}; accepted: {accepted(cls)}")
        kwargs[key] = _convert(key, value, types_[key]) if isinstance(value, str) else value
    try:
        return cls(**kwargs)
    except OptionError:
        raise
    except (TypeError, ValueError) as e:
        raise OptionError(f"bad options: {e}") from None


def options_to_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)
