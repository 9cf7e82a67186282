"""The paper-size double-descent preset at m = 2 only, best of 2 (its other settings as
they are): ~65 minutes on this machine's 2 cores, so a measurement, not a preset.

    python benchmarks/double_descent_m2.py OUT

Prints each run's seconds and losses as it ends, then the preset's claims; OUT holds
the runs and the preset's figures, as `reproduce double-descent` would write them.
"""
import json, sys, time
from pathlib import Path
from superposition import experiments
from superposition.experiments import double_descent
double_descent.SETTINGS["paper"]["hidden"] = (2,)
original = double_descent.fit
def timed_fit(directory, keys, options, **kw):
    started = time.perf_counter()
    out = original(directory, keys, options, **kw)
    row = out[1]["instances"][0]
    print(json.dumps({"run": directory.name, "seconds": round(time.perf_counter() - started, 1),
                      "test_loss": row["test_loss"], "train_loss": row["train_loss"]}), flush=True)
    return out
double_descent.fit = timed_fit
summary = experiments.reproduce("double-descent", Path(sys.argv[1]), experiments.Options(restarts=2))
print(json.dumps({"wall_seconds": summary["wall_seconds"], "claims": summary["claims"]}, indent=1), flush=True)
