"""The paper-size double-descent preset in pieces: ~65 minutes for m = 2 and ~23 for m = 3
and 5 on this machine's 2 cores, too long for one sitting, so each piece is its own run.

    python benchmarks/double_descent_paper.py OUT --hidden 2        # the m = 2 runs
    python benchmarks/double_descent_paper.py OUT --hidden 3 5      # the m = 3 and 5 runs
    python benchmarks/double_descent_paper.py OUT --assemble PIECE PIECE ...

A piece is the preset with its m values cut to --hidden (every other setting as it is):
it prints each run's seconds and losses as it ends, and OUT holds the runs as
`reproduce double-descent` would write them. --assemble reads the runs of every (m, T)
from the pieces and writes the preset's figures, claims.json and its table to OUT.
"""

import argparse
import json
import time
from pathlib import Path

from superposition import experiments
from superposition.experiments import double_descent
from superposition.files import to_json


def piece(out: Path, hidden: list[int]) -> None:
    spec = double_descent.SETTINGS["paper"]
    full_batch = max(spec["sizes"])  # the whole preset's: a piece trains the same configs
    if spec["hidden"][0] not in hidden:  # every m of the piece has the other m's shorter grid
        spec["sizes"] = tuple(T for T in spec["sizes"] if T <= spec["other_m_up_to"])
    spec["hidden"] = tuple(sorted(hidden))  # as the preset orders them: m = 2, with the whole grid, first
    fit = double_descent.fit

    def timed_fit(directory, keys, options, **kwargs):
        keys = dict(keys, batch_size=full_batch)
        started = time.perf_counter()
        result, metrics = fit(directory, keys, options, **kwargs)
        row = metrics["instances"][0]
        seconds = round(time.perf_counter() - started, 1)
        print(json.dumps({"run": directory.name, "seconds": seconds, "test_loss": row["test_loss"], "train_loss": row["train_loss"]}), flush=True)
        return result, metrics

    double_descent.fit = timed_fit
    summary = experiments.reproduce("double-descent", out, experiments.Options())
    print(json.dumps({"wall_seconds": summary["wall_seconds"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--hidden", type=int, nargs="+")
    parser.add_argument("--assemble", type=Path, nargs="+")
    args = parser.parse_args()
    if args.assemble:
        args.out.mkdir(parents=True)
        outcome = double_descent.assemble(args.assemble, args.out)
        claims = [vars(c) for c in outcome.claims]
        (args.out / "claims.json").write_text(to_json(claims))
        (args.out / "table.json").write_text(to_json(outcome.table))
        print(json.dumps(claims, indent=1, ensure_ascii=False))
    else:
        piece(args.out, args.hidden)


if __name__ == "__main__":
    main()
