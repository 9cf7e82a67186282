"""Train, measure, save and draw toy models of superposition (Elhage et al., 2022)."""

from __future__ import annotations

from importlib.metadata import version as _version
from typing import TYPE_CHECKING

__version__ = _version("superposition")

if TYPE_CHECKING:
    from .runs import Run


def load_run(path) -> Run:
    """Read a run directory: `.config` (Config), `.params` (name -> tensor), `.metrics` (dict)."""
    from .runs import load_run as _load_run  # torch is imported only when a run is read

    return _load_run(path)


def load_sweep(path):
    """The results table of a sweep directory (one row per grid point) as a pandas DataFrame."""
    from .sweep import load_sweep as _load_sweep

    return _load_sweep(path)


__all__ = ["__version__", "load_run", "load_sweep"]
