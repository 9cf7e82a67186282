"""The README's examples of handing a model to other tools run as written."""

import os
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Handing a model to other tools") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_an_example_per_tool():
    assert len(examples()) == 3


@pytest.mark.parametrize("number", range(3))
def test_an_example_runs_as_written(number, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the venv's `superposition`
    exec(compile(examples()[number], f"README example {number}", "exec"), {})
