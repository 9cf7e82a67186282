"""A sweep's grid: the values of an axis, and a shard (one batched job of grid points).

Both kinds of sweep read these: sweep.py (toy models) and sae_sweep.py (SAEs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ConfigError, finite_number

MAX_POINTS = 100_000  # a bigger grid is almost surely a typo in a range's count


@dataclass
class Shard:
    config: Any  # a Config, or an SAEConfig for a sweep of SAEs
    points: list[dict[str, Any]]  # the grid point of each instance, in order, with its base (or source) instance

    @property
    def key(self) -> str:
        text = json.dumps(self.config.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def axis_values(name: str, spec: Any, numeric: bool = False, whole: bool = False) -> list[Any]:
    """An axis's values from a list or a range; numeric: every value a finite number;
    whole: a range's whole values become ints (`hidden = { linear = [1, 4, 4] }`)."""
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"axes.{name}: empty axis; give at least one value")
        if numeric and not all(finite_number(v) for v in spec):
            raise ConfigError(f"axes.{name}: every value must be a finite number, got {spec!r}")
        values = spec
    elif isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("log", "linear"):
        values = _range(name, *next(iter(spec.items())))
        if whole:
            values = [int(v) if float(v).is_integer() else v for v in values]
    else:
        raise ConfigError(f"axes.{name}: expected a list of values or {{log|linear = [start, stop, count]}}, got {spec!r}")
    try:
        same = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else json.dumps(v, sort_keys=True) for v in values]
    except (TypeError, ValueError) as error:  # a TOML date or time
        raise ConfigError(f"axes.{name}: holds a value that is not a number, string, list or table ({error})") from None
    if len(set(same)) != len(same):
        raise ConfigError(f"axes.{name}: a value appears twice (1 and 1.0 are one value); give each value once")
    return values


def _range(name: str, kind: str, args: Any) -> list[float]:
    if not (isinstance(args, list) and len(args) == 3 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
        raise ConfigError(f"axes.{name}.{kind}: expected [start, stop, count]")
    start, stop, count = args
    if not all(map(finite_number, args)) or int(count) != count or count < 1 or count > MAX_POINTS:
        raise ConfigError(f"axes.{name}.{kind}: finite start and stop, and a whole count from 1 to {MAX_POINTS:,}; got {args}")
    if kind == "log":
        if start <= 0 or stop <= 0:
            raise ConfigError(f"axes.{name}.log: start and stop must be > 0")
        return [float(v) for v in np.geomspace(start, stop, int(count))]
    return [float(v) for v in np.linspace(start, stop, int(count))]
