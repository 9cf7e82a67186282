from __future__ import annotations

import pytest

from superposition.cli import main


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


@pytest.fixture(autouse=True)
def traced_compilation(monkeypatch):
    """The compiled engine traces with "aot_eager" in tests, in this process and the ones it
    starts (the same graph, run op by op): an Inductor build costs 15-40 s per graph, and on
    a GPU machine `device = auto` puts every test's training on that engine. Tests of
    Inductor's own code request `inductor`."""
    monkeypatch.setenv("SUPERPOSITION_COMPILE_BACKEND", "aot_eager")


@pytest.fixture
def inductor(monkeypatch):
    monkeypatch.setenv("SUPERPOSITION_COMPILE_BACKEND", "inductor")
