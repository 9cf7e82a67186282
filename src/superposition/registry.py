"""What registering a unit checks (a model kind, an SAE kind), the same for every table."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ConfigError


def admit(table: dict[str, Any], cls: Any, base: type, register: str, key: str) -> str:
    """The name under which `cls` may enter `table`: it must be a subclass of `base` with a
    `name` of its own that no other class has taken (the same class again, a notebook cell
    run twice, may take it again). Otherwise one line, naming the function `register`."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{register}: expected a subclass of {base.__module__}.{base.__qualname__}, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{register}: {cls.__name__} needs a `name` of its own, the string configs give as `{key}`")
    taken = table.get(name)
    if taken is not None and (type(taken).__module__, type(taken).__qualname__) != (cls.__module__, cls.__qualname__):
        raise ConfigError(f"{register}: {name!r} is already registered by another class; give {cls.__name__} another name")
    return name


def own(cls: type, attribute: str, default: Any) -> None:
    """`attribute` as the class itself declares it, never inherited: a subclass that changes
    the arithmetic a kernel computes is a unit the kernel does not compute."""
    if attribute not in cls.__dict__:
        setattr(cls, attribute, default)


def parse_options(options: type[BaseModel], given: dict[str, Any], owner: str) -> Any:
    """A unit's own config keys (a data generator's, an SAE kind's) as its `options` model;
    a bad one raises ValueError naming the key, an unknown one that it is not `owner`'s."""
    try:
        return options(**given)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ValueError(f"{key}: not an option of {owner}") from None
        raise ValueError(f"{key}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})") from None


def declared_keys(table: dict[str, Any]) -> dict[str, list[str]]:
    """Every key the units of `table` declare in their `Options`, with the units that declare it."""
    keys: dict[str, list[str]] = {}
    for name, unit in table.items():
        for key in unit.Options.model_fields:
            keys.setdefault(key, []).append(name)
    return keys
