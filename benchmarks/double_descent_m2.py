"""The paper-size double-descent preset at m = 2 only, best of 2 (its other settings as
they are): ~65 minutes on this machine's 2 cores, so a measurement, not a preset.

    python benchmarks/double_descent_m2.py OUT

Prints each run's seconds and losses as it ends, then the preset's claims; OUT holds
the runs and the preset's figures, as `reproduce double-descent` would write them.
"""

import json
import sys
import time
from pathlib import Path

from superposition import experiments
from superposition.experiments import double_descent


def main() -> None:
    double_descent.SETTINGS["paper"]["hidden"] = (2,)
    fit = double_descent.fit

    def timed_fit(directory, keys, options, **kwargs):
        started = time.perf_counter()
        result, metrics = fit(directory, keys, options, **kwargs)
        row = metrics["instances"][0]
        seconds = round(time.perf_counter() - started, 1)
        print(json.dumps({"run": directory.name, "seconds": seconds, "test_loss": row["test_loss"], "train_loss": row["train_loss"]}), flush=True)
        return result, metrics

    double_descent.fit = timed_fit
    summary = experiments.reproduce("double-descent", Path(sys.argv[1]), experiments.Options(restarts=2))
    print(json.dumps({"wall_seconds": summary["wall_seconds"], "claims": summary["claims"]}, indent=1))


if __name__ == "__main__":
    main()
