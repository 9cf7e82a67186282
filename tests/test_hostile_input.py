"""Property-based: random malformed input to the command line and to the config and spec
readers ends in exit status 2, one line on stderr, no traceback, and nothing written.

Nothing here trains: `train` is replaced by a function that raises `WouldTrain`, so an
input that turns out to be valid is recognised (it reached training) and discarded.

`make test` runs a fixed, derandomised set of examples; to search further, run
`HYPOTHESIS_PROFILE=explore pytest tests/test_hostile_input.py`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import superposition as sp
import superposition.runs
import superposition.saes.runs
import superposition.saes.training
import superposition.training.loop
from superposition.cli import main
from superposition.config import USER_KEYS
from superposition.saes.config import USER_KEYS as SAE_KEYS
from superposition.files import MARKER, seal
from superposition.runs import SEALED

settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)  # fmt: skip
settings.register_profile(
    "explore", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class WouldTrain(BaseException):
    """The input was valid: the command reached training."""


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise WouldTrain

    # every binding the commands reach: the loops' own and the names the run modules import
    monkeypatch.setattr(superposition.training.loop, "train", refuse)
    monkeypatch.setattr(superposition.runs, "fit", refuse)
    monkeypatch.setattr(superposition.saes.training, "train", refuse)
    monkeypatch.setattr(superposition.saes.runs, "train", refuse)


def run_cli(args: list[str]) -> tuple[int, str]:
    """The CLI in this process: (exit status, stderr); a valid input is rejected as an example."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in args])
        except SystemExit as done:
            return done.code, err.getvalue()
        except WouldTrain:
            reject()
    raise AssertionError("the command line returned without an exit status")


def assert_refused(code: int, err: str, before: set[str], root: Path) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    assert {str(p.relative_to(root)) for p in root.rglob("*")} == before, "something was written"


def in_scratch(files: dict[str, bytes], args) -> None:
    """Write `files` into a fresh directory, run the command `args(root)` there, check the refusal."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, content in files.items():
            (root / name).write_bytes(content)
        before = {str(p.relative_to(root)) for p in root.rglob("*")}
        code, err = run_cli(args(root))
        assert_refused(code, err, before, root)


# values a careless user might put anywhere
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.none(),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
KEYS = st.one_of(st.sampled_from(sorted(USER_KEYS)), st.sampled_from([k.replace("_", "-") for k in sorted(USER_KEYS)]), st.text(max_size=10))
TOML_VALUES = st.sampled_from(
    ["true", '"x"', "1e999", "nan", "inf", "-1", "0", "2.5", "-0.0", '[1, "a"]', "{ a = 1 }", "[[1], [2, 3]]",
     "99999999999999999999999", "[]", '"0.5"', "[0.5, 1.5]", "1979-05-27", "[true]", "0x10", "1_000"]
)  # fmt: skip


@given(content=st.binary(max_size=200), suffix=st.sampled_from([".toml", ".json", ".txt", ""]))
def test_random_bytes_as_a_config_file(content, suffix):
    in_scratch({f"c{suffix}": content}, lambda root: ["train", "--config", root / f"c{suffix}", "--out", root / "run"])


@given(table=st.dictionaries(KEYS, JSON_VALUES, min_size=1, max_size=4))
def test_random_json_config_tables(table):
    content = json.dumps(table).encode()
    in_scratch({"c.json": content}, lambda root: ["train", "--config", root / "c.json", "--out", root / "run"])


@given(lines=st.lists(st.tuples(KEYS, TOML_VALUES), min_size=1, max_size=4))
def test_random_toml_config_lines(lines):
    text = "\n".join(f"{json.dumps(key)} = {value}" for key, value in lines).encode()
    in_scratch({"c.toml": text}, lambda root: ["train", "--config", root / "c.toml", "--out", root / "run"])


TRAIN_FLAGS = [
    "--model", "--activation", "--hidden-activation", "--features", "--hidden", "--sparsity", "--importance-decay",
    "--importance", "--data", "--target", "--correlation", "--set-size", "--steps", "--batch-size", "--lr",
    "--optimizer", "--weight-decay", "--schedule", "--warmup", "--seed", "--device", "--engine", "--early-stop",
    "--restarts", "--eval-batch-size",
]  # fmt: skip
FLAG_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e999", "0.0", "1,2,x", ",", "1,,2", "18446744073709551616", "1.5"]),
)


@given(flags=st.lists(st.tuples(st.sampled_from(TRAIN_FLAGS), FLAG_VALUES), min_size=1, max_size=3))
def test_random_train_flags(flags):
    extra = [part for flag, value in flags for part in (flag, value)]
    in_scratch({}, lambda root: ["train", "--out", root / "run", "--steps", "5", *extra])


SPEC_AXES = st.dictionaries(
    st.one_of(st.sampled_from(["density", "sparsity", "importance_last", "importance-last", "seed", "hidden", "lr",
                               "model", "feature_probability", "steps"]), st.text(max_size=8)),
    st.one_of(TOML_VALUES, st.sampled_from(["{ log = [1, 0.01, 3] }", "{ log = [0, 1, 3] }", "{ linear = [1, 2] }",
                                            "{ log = [1, 0.1, 1e9] }", '{ cubic = [1, 2, 3] }', "[0.5, 0.5]"])),
    min_size=1, max_size=3,
)  # fmt: skip


@given(base=st.lists(st.tuples(KEYS, TOML_VALUES), max_size=3), axes=SPEC_AXES, extra=st.sampled_from(["", "[other]\n", "x = 1\n"]))
def test_random_sweep_specs(base, axes, extra):
    text = extra + "[base]\n" + "".join(f"{json.dumps(k)} = {v}\n" for k, v in base)
    text += "[axes]\n" + "".join(f"{json.dumps(k)} = {v}\n" for k, v in axes.items())
    in_scratch({"spec.toml": text.encode()}, lambda root: ["sweep", root / "spec.toml", "--out", root / "out", "--quiet"])


@given(content=st.binary(max_size=200))
def test_random_bytes_as_a_sweep_spec(content):
    in_scratch({"spec.toml": content}, lambda root: ["sweep", root / "spec.toml", "--out", root / "out", "--quiet"])


READERS = st.sampled_from(["metrics", "plot", "report"])
RUN_FILES = st.sampled_from(["config.json", "metrics.json", "model.safetensors", "history.csv", "superposition.json"])


@given(command=READERS, name=RUN_FILES, content=st.one_of(st.binary(max_size=120), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_readers_of_a_run_whose_files_are_garbage(command, name, content):
    """A directory that looks like a run, one file replaced by garbage (and, for the marker
    itself, a marker of garbage): every reader refuses it in one line."""
    files = {n: b"{}" for n in SEALED}
    files[name] = content
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "run").mkdir()
        for n, c in files.items():
            (root / "run" / n).write_bytes(c)
        if name != MARKER:  # checksums that match, so the readers look inside the files
            seal(root / "run", "run", SEALED)
        before = {str(p.relative_to(root)) for p in root.rglob("*")}
        code, err = run_cli([command, root / "run"])
        assert_refused(code, err, before, root)


SAE_FLAGS = [
    "--data", "--features", "--dims", "--density", "--instances", "--kind", "--latents", "--l1", "--k", "--l0",
    "--steps", "--lr", "--batch-size", "--seed", "--device", "--engine", "--eval-batch-size",
]  # fmt: skip


@given(flags=st.lists(st.tuples(st.sampled_from(SAE_FLAGS), FLAG_VALUES), min_size=1, max_size=3))
def test_random_sae_flags(flags):
    extra = [part for flag, value in flags for part in (flag, value)]
    base = ["--data", "dictionary", "--features", "8", "--dims", "3", "--steps", "5", "--quiet"]
    in_scratch({}, lambda root: ["sae", *base, *extra, "--out", root / "np" / "s"])


SAE_SPEC_KEYS = st.one_of(st.sampled_from(sorted(SAE_KEYS)), st.text(max_size=8))
SAE_AXES = st.dictionaries(
    st.one_of(st.sampled_from(["density", "kind", "l1", "k", "l0", "latents", "seed", "run", "features", "lr"]), st.text(max_size=6)),
    st.one_of(TOML_VALUES, st.sampled_from(["{ log = [1, 0.01, 3] }", "[0.5, nan]", '["relu", "gated"]', "[1e-300]", "[0, 1]"])),
    min_size=1, max_size=3,
)  # fmt: skip


@given(table=st.lists(st.tuples(SAE_SPEC_KEYS, TOML_VALUES), max_size=3), axes=SAE_AXES)
def test_random_sae_specs(table, axes):
    text = '[sae]\ndata = "dictionary"\nfeatures = 8\ndims = 3\nsteps = 5\n'
    text += "".join(f"{json.dumps(k)} = {v}\n" for k, v in table if k not in ("data", "features", "dims", "steps"))
    text += "[axes]\n" + "".join(f"{json.dumps(k)} = {v}\n" for k, v in axes.items())
    in_scratch({"spec.toml": text.encode()}, lambda root: ["sweep", root / "spec.toml", "--out", root / "out", "--quiet"])


SAMPLE_CONFIG = sp.Config(features=4, hidden=2, sparsity=[0.5], steps=20, batch_size=8)
STEPS = st.one_of(
    JSON_VALUES,
    st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=4),
    st.lists(st.integers(min_value=0, max_value=19), min_size=1, max_size=4),
    st.builds(range, st.integers(min_value=-5, max_value=30)),
)


@given(steps=STEPS)
def test_random_steps_to_sample(steps):
    """sp.sample returns the batches of valid steps, and refuses anything else in one line."""
    try:
        batches = sp.sample(SAMPLE_CONFIG, steps=steps)
    except sp.ConfigError as error:
        assert str(error).startswith(("steps: ", "config: ")) and "\n" not in str(error)
        return
    assert batches.shape == (len(list(steps)), 1, 8, 4)
