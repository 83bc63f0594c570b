"""Settings from JSON (``config.json``) or keyword arguments into frozen dataclasses, checked.

Every value is checked against its field's annotation, so a hand-edited file or a wrong keyword
argument is one line naming the setting, not an error deep inside PyTorch later.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from weft.errors import WeftError

T = TypeVar("T")


def json_shaped(value: Any) -> Any:
    """``value`` with tuples as lists, as JSON holds it."""
    if isinstance(value, dict):
        return {k: json_shaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_shaped(v) for v in value]
    return value


class SettingTypeError(WeftError, TypeError):
    """A setting (from config.json or the Python API) whose value has the wrong type."""


def from_fields(cls: type[T], values: Any) -> T:
    """Build a dataclass from a dict, ignoring keys it does not know (newer or older runs).

    Values are checked against the fields' types, so a hand-edited ``config.json`` (or a
    wrong keyword argument) fails here in one line rather than later deep inside PyTorch.
    """
    if not isinstance(values, dict):
        raise SettingTypeError(f"a settings object was expected, not {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            continue
        value = tuple(value) if isinstance(value, list) else value
        expected = _type_problem(value, hints[key])
        if expected is not None:
            raise SettingTypeError(f"{key} must be {expected}, not {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def from_saved(cls: type[T], values: Any, path: Any) -> T:
    """:func:`from_fields` for settings read from the file ``path``: a value of the wrong type
    (or a section that is not an object) is reported in one line naming the file."""
    try:
        return from_fields(cls, values)
    except (TypeError, ValueError) as exc:
        raise WeftError(f"{path} is damaged or from an incompatible version ({exc})") from None


_DESCRIPTIONS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                 type(None): "null"}


def _type_problem(value: Any, hint: Any) -> str | None:
    """None when ``value`` fits the annotation ``hint``, else what was expected instead."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        problems = [_type_problem(value, arg) for arg in args]
        return None if None in problems else " or ".join(str(p) for p in problems)
    if typing.get_origin(hint) is tuple and args[-1:] == (Ellipsis,):
        fits = isinstance(value, tuple) and all(_type_problem(v, args[0]) is None for v in value)
        return None if fits else "a list of strings" if args[0] is str else "a list"
    if hint in (int, float) and isinstance(value, bool):
        return _DESCRIPTIONS[hint]
    accepted = {float: (int, float)}.get(hint, hint)
    if hint in _DESCRIPTIONS and not isinstance(value, accepted):
        return _DESCRIPTIONS[hint]
    return None  # a type this check does not cover
