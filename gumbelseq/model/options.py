"""Backend options: ``-o key=value`` strings typed by the backend's dataclass, and range checks
declared on its fields.

A field declares its checks in its metadata, so no backend writes them by hand::

    hidden: int = field(default=10, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    beta1: float = field(default=0.5, metadata={"min": 0, "lt": 1})
    schedule: str = field(default="linear", metadata={"choices": ("constant", "linear")})

``min`` / ``max`` are inclusive bounds, ``gt`` / ``lt`` exclusive ones, ``choices`` the accepted
values. Every field is also checked against its annotated type (``int`` refuses ``True`` and
``2.0``; ``float`` accepts ints but not NaN or infinities). A subclass that redeclares a field
(to change its default) keeps the checks its base declared for it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable, Iterable, Mapping

from ..errors import OptionError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_RULES = ("min", "max", "gt", "lt", "choices")


@functools.cache
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


def _base_type(tp: Any) -> Any:
    if _is_optional(tp):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _convert(key: str, raw: str, tp: Any) -> Any:
    if _is_optional(tp):
        if raw.lower() in ("none", "null", ""):
            return None
        tp = _base_type(tp)
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


@functools.cache
def _rules(cls: type) -> dict[str, dict[str, Any]]:
    """Each field's checks, merged down the class hierarchy (base first) so that redeclaring a
    field to change its default does not drop the checks the base declared."""
    merged: dict[str, dict[str, Any]] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for f in dataclasses.fields(klass):
            rules = {k: v for k, v in f.metadata.items() if k in _RULES}
            merged.setdefault(f.name, {}).update(rules)
    return merged


def finite_number(value: Any) -> bool:
    """An int or float that is finite as a float: an int past about 1.8e308 is not (it made
    ``math.isfinite`` and ``float()`` raise OverflowError, a traceback)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _has_type(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return finite_number(value)
    if tp is str:
        return isinstance(value, str)
    return True  # a type the core does not parse: the backend checks it


def _in_range(value: Any, rules: Mapping[str, Any]) -> bool:
    if "choices" in rules and value not in rules["choices"]:
        return False
    checks = (("min", lambda b: value >= b), ("max", lambda b: value <= b),
              ("gt", lambda b: value > b), ("lt", lambda b: value < b))
    return all(check(rules[key]) for key, check in checks if key in rules)


def _expected(tp: Any, rules: Mapping[str, Any]) -> str:
    """What a field accepts, as the end of a sentence: "an integer >= 1", "a number in [0, 1)"."""
    if "choices" in rules:
        return "one of " + ", ".join(str(c) for c in rules["choices"])
    if tp is bool:
        return "true or false"
    low = next(((k, rules[k]) for k in ("min", "gt") if k in rules), None)
    high = next(((k, rules[k]) for k in ("max", "lt") if k in rules), None)
    if tp is int:
        noun = "an integer"
    elif tp is float:
        noun = "a number" if low and high else "a finite number"
    elif tp is str:
        noun = "a string"
    else:
        noun = f"a {_describe(tp)}"
    if low and high:
        return f"{noun} in {'[' if low[0] == 'min' else '('}{low[1]:g}, {high[1]:g}{']' if high[0] == 'max' else ')'}"
    if low:
        return f"{noun} {'>=' if low[0] == 'min' else '>'} {low[1]:g}"
    if high:
        return f"{noun} {'<=' if high[0] == 'max' else '<'} {high[1]:g}"
    return noun


def check_option(cls: type, name: str, value: Any) -> None:
    """Raise ``OptionError`` unless ``value`` has the type and range field ``name`` of ``cls`` declares."""
    tp = _field_types(cls)[name]
    rules = _rules(cls).get(name, {})
    if value is None and _is_optional(tp):
        return
    base = _base_type(tp)
    if not (_has_type(value, base) and _in_range(value, rules)):
        raise OptionError(f"option {name}={value!r} is invalid: expected {_expected(base, rules)}")


def check_options(options: Any) -> None:
    """Check every field of the dataclass instance ``options`` (``BaseOptions.__post_init__``)."""
    cls = type(options)
    for name in _field_types(cls):
        check_option(cls, name, getattr(options, name))


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


def build_options(
    cls: type,
    values: Mapping[str, Any],
    defaults: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
) -> Any:
    """Instantiate the options dataclass ``cls`` from strings or typed values, checking keys.

    ``defaults(given)`` (a backend's presets and derived values) receives the given values
    typed and checked field by field, and returns values for options not given; given values
    win. The dataclass's own defaults fill the rest, and its ``__post_init__`` checks the whole.
    """
    types_ = _field_types(cls)
    given: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types_:
            raise OptionError(f"unknown option {key!r}; accepted: {accepted(cls)}")
        given[key] = _convert(key, value, types_[key]) if isinstance(value, str) else value
    # Checked before a backend derives other values from them (a preset name picks a table).
    for key, value in given.items():
        check_option(cls, key, value)
    kwargs = {**defaults(dict(given)), **given} if defaults is not None else given
    try:
        return cls(**kwargs)
    except OptionError:
        raise
    except (TypeError, ValueError) as e:
        raise OptionError(f"bad options: {e}") from None


def options_to_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)
