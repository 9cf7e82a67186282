"""What registering a unit checks (a model kind, an SAE kind), the same for every table."""

from __future__ import annotations

from typing import Any

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
