"""Double descent at ARENA's size: 1,000 features at S = 0.99, m = 2, T from 3 to 2,000
(see double_descent.py, whose runs, figures and claims it shares)."""

from __future__ import annotations

from pathlib import Path

from . import Options, Outcome, double_descent


def run(directory: Path, options: Options) -> Outcome:
    return double_descent.run(directory, options, setting="arena")
