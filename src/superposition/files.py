"""Atomic writes: a reader sees the old content or the new, never half of either.

The markers that say a directory is ours live here too, so that `atomic_dir`
can refuse to replace a directory we did not write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .config import ConfigError

CONFIG = "config.json"  # a run's resolved config
REPRODUCTION = "reproduction.json"  # the summary of a `reproduce` output
# A directory holding one of these is ours.
MARKERS = (CONFIG, REPRODUCTION)


def write_atomic(path: Path, content: bytes | str) -> None:
    """Write a file via a temporary file in the same directory, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode() if isinstance(content, str) else content)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_ours(path: Path) -> bool:
    return any((path / marker).is_file() for marker in MARKERS)


def check_output_dir(path: Path) -> None:
    """Refuse to replace anything that is not our output (an empty directory is fine)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {path} exists and is not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not is_ours(path):
        raise ConfigError(
            f"out: {path} exists and is not a superposition run; choose another --out or remove it"
        )


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden staging directory; on success it replaces `path` in one rename.

    A crash or kill leaves only the hidden `.NAME.partial-*` sibling, never a
    directory at `path` that looks complete.
    """
    path = Path(path)
    check_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    try:
        yield staging
        if path.exists():
            trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, trash / "old")
            os.replace(staging, path)
            shutil.rmtree(trash)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
