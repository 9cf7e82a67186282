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
