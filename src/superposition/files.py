"""Our directories on disk: how they are recognised, sealed, locked and replaced.

Every directory this package writes (a run, a `reproduce` output, a sweep, a
report's figures) holds `superposition.json`, the marker: the format, its
version, what the directory is, and the SHA-256 of the files that must not change.
It is written last, so a directory without it was never finished. A directory is
recognised as ours by that marker's content alone, never by a common file name,
and a directory that is not ours is never replaced.

A directory is built in a hidden `.NAME.partial-*` sibling and published in one
atomic step (an exchange of the two names, or a rename when NAME is new), while
`.NAME.lock` in the same parent keeps a second writer out. Staging and trash that
a killed writer left behind are removed by the next holder of the lock: only a
holder of the lock creates them, so no live process owns them.

Files are written atomically (a temporary file in the same directory, then a
rename), and every JSON file is strict JSON: a non-finite number is written as null.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .errors import ConfigError

MARKER = "superposition.json"
FORMAT, FORMAT_VERSION = "superposition", 3
KINDS = ("run", "reproduction", "sweep", "figures", "sae", "saelens-model", "saelens-sae", "spd-model")  # the last three: exports we wrote
CONFIG = "config.json"  # a run's resolved config
REPRODUCTION = "reproduction.json"  # the summary of a `reproduce` output


def to_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON: NaN and infinities, which JSON cannot hold, become null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=indent, allow_nan=False)


def _umask() -> int:
    """The process's umask, read without changing it where the system tells (setting and
    restoring it is not safe while other threads create files, as Dask workers do)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def remove_stale_temporaries(directory: Path) -> None:
    """`.NAME.*.tmp` files a killed `write_atomic` left (call only while holding the directory's lock)."""
    for tmp in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


# --- the marker ---------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal(directory: Path, kind: str, files: Iterable[str] = (), **extra: Any) -> None:
    """Write the marker into a finished directory, with the checksums of `files`."""
    assert kind in KINDS
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "package_version": version("superposition"),
        **extra,
        "sha256": {name: _sha256(Path(directory) / name) for name in files},
    }
    write_atomic(Path(directory) / MARKER, to_json(record))


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The marker of one of our directories, or None for anything else."""
    try:
        record = json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError, RecursionError):  # ValueError: bad UTF-8, JSON, or a 5,000-digit number
        return None
    if not (
        isinstance(record, dict)
        and record.get("format") == FORMAT
        and record.get("kind") in KINDS
        and isinstance(record.get("sha256"), dict)
    ):
        return None
    return record


def kind_of(directory: Path) -> str | None:
    record = read_marker(directory)
    return record["kind"] if record else None


def corrupted(directory: Path) -> list[str]:
    """Names of the sealed files that are missing or no longer match their checksum."""
    record = read_marker(directory)
    if record is None:
        return [MARKER]
    bad = []
    for name, expected in record["sha256"].items():
        path = Path(directory) / str(name)
        try:
            ok = path.is_file() and _sha256(path) == expected
        except OSError:
            ok = False
        if not ok:
            bad.append(str(name))
    return bad


def verify(directory: Path, kind: str, what: str) -> dict[str, Any]:
    """The marker of a directory of `kind` whose sealed files are intact; otherwise one ConfigError line."""
    if not Path(directory).exists():
        raise ConfigError(f"{what}: {directory} does not exist")
    record = read_marker(directory)
    if record is None or record["kind"] != kind:
        version = "" if (Path(directory) / MARKER).exists() else f" (no {MARKER})"
        if not (Path(directory) / MARKER).exists() and (Path(directory) / CONFIG).is_file():
            version += "; runs written by superposition 0.1 are not read by 0.3, train it again"
        raise ConfigError(f"{what}: {directory} is not a {kind} directory written by superposition{version}")
    if record.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{what}: {directory} was written in format {record.get('format_version')!r}, "
            f"this version reads format {FORMAT_VERSION}; write it again"
        )
    bad = corrupted(directory)
    if bad:
        raise ConfigError(
            f"{what}: {directory}/{bad[0]} is missing or does not match the checksum written with it "
            "(corrupted or edited); write it again"
        )
    return record


# --- output paths -------------------------------------------------------------------


# how a refusal names each kind of directory
KIND_NAMES = {
    "run": "a run",
    "reproduction": "a `superposition reproduce` output",
    "sweep": "a sweep",
    "figures": "a report's figures",
    "sae": "an SAE directory",
}


def check_output_dir(path: Path, kind: str, owned: bool = False, inputs: Iterable[Path] = ()) -> Path:
    """Refuse, in one line, an output path we may not or cannot replace; return the path
    every later step uses: its parent with symbolic links and `..` resolved, and its name.

    Only a directory of `kind` is replaced: a finished sweep is never turned into a run,
    nor a run into an SAE directory. `inputs`: what the command reads (a source run, a
    config file), which its output may neither be nor hold.
    `owned`: the path lies inside a directory of ours that owns its contents (a
    sweep's shards), so it may be replaced whatever it holds.
    """
    assert kind in KINDS
    try:
        return _check_output_dir(Path(path), kind, owned, tuple(inputs))
    except OSError as error:  # a name too long, a parent we may not read, ...
        raise ConfigError(f"out: cannot use {path} ({error.strerror or error})") from None


def _check_output_dir(path: Path, kind: str, owned: bool, inputs: tuple[Path, ...]) -> Path:
    if path.name in ("", ".", ".."):
        raise ConfigError(f"out: {path} is the current directory or one above it; name a new directory")
    if path.is_symlink():
        raise ConfigError(f"out: {path} is a symbolic link; give the directory itself")
    for ancestor in (path.parent, *path.parent.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                raise ConfigError(f"out: {ancestor} is not a directory, so {path} cannot be created in it")
            break
    # what the checks below see is exactly what will be replaced
    absolute = Path(os.path.realpath(path.parent)) / path.name
    cwd = Path(os.path.realpath(Path.cwd()))
    if absolute in (cwd, *cwd.parents):
        raise ConfigError(f"out: {path} is the current directory or one above it; name a new directory")
    if absolute.exists() and not absolute.is_dir():
        raise ConfigError(f"out: {path} exists and is not a directory; choose another --out")
    for source in inputs:
        source = Path(os.path.realpath(source))
        if source == absolute or absolute in source.parents:
            raise ConfigError(f"out: {path} holds this command's own input {source}; choose another --out")
    if not owned and absolute.is_dir() and any(absolute.iterdir()):
        found = kind_of(absolute)
        if found is None:
            raise ConfigError(
                f"out: {path} exists and is not a superposition output (no {MARKER}); "
                "choose another --out or remove it"
            )
        if found != kind:
            raise ConfigError(
                f"out: {path} is {KIND_NAMES[found]}, and only {KIND_NAMES[kind]} is replaced here; "
                "choose another --out or remove it"
            )
    return absolute


def check_free_space(path: Path, needed: int) -> None:
    """Refuse before any work when the disk under `path` cannot hold `needed` bytes."""
    existing = next(p for p in (Path(path), *Path(path).parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ConfigError(
            f"out: {existing} has {free / 2**20:.1f} MiB free, the output needs about {needed / 2**20:.1f} MiB; "
            "free some space or choose another --out"
        )


@contextlib.contextmanager
def lock(path: Path, what: str) -> Iterator[None]:
    """Hold `path` (a lock file) exclusively, or refuse at once if another process holds it.

    The file is removed on release. A process that opened it just before may then
    lock the removed file: it checks that the file it locked is still the one at
    `path`, and tries again if not.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as error:
            raise ConfigError(f"out: cannot write in {path.parent} ({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"out: {what} is being written by another process; wait for it or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def atomic_dir(path: Path, kind: str, owned: bool = False, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a hidden staging directory; on success it takes `path`'s place in one atomic step.

    Everything that can be refused is refused on entry, before the caller does any
    work: a path that is not ours or not of `kind` (see check_output_dir), an
    unwritable parent, a second writer. The caller must `seal` the staging directory
    as `kind`: only directories so sealed are published.
    """
    absolute = check_output_dir(path, kind, owned, inputs)
    parent = absolute.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # deepest first
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"out: cannot create {parent} ({error.strerror})") from None
    published = False
    try:
        with lock(parent / f".{absolute.name}.lock", str(path)):
            check_output_dir(path, kind, owned, inputs)  # again, now that no other writer can change it
            name = glob.escape(absolute.name)  # `x[1]` must not match `.x1.partial-*` of another writer
            for stale in (*parent.glob(f".{name}.partial-*"), *parent.glob(f".{name}.old-*")):
                shutil.rmtree(stale, ignore_errors=True)
            try:
                staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{absolute.name}.partial-"))
                os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; others may read our outputs
            except OSError as error:
                raise ConfigError(f"out: cannot write in {parent} ({error.strerror})") from None
            try:
                yield staging
                if kind_of(staging) != kind:
                    raise RuntimeError(f"{staging} was not sealed as a {kind} directory; nothing published")
                _publish(staging, absolute)
                published = True
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    finally:
        if not published:  # nothing written: not even the directories made to hold it
            for directory in created:
                with contextlib.suppress(OSError):
                    directory.rmdir()


def _publish(staging: Path, path: Path) -> None:
    if not path.exists():
        os.rename(staging, path)
    elif _exchange(staging, path):
        shutil.rmtree(staging)  # it now holds the old directory
    else:  # two renames: a kill between them leaves the old directory in the trash
        trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        os.replace(path, trash / "old")
        os.replace(staging, path)
        shutil.rmtree(trash)
