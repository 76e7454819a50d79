"""Where commands write: checked before the work, written atomically, nothing a user made replaced unasked.

The one mechanism every writing command and writer goes through:

- ``check_output`` / ``check_outputs`` run BEFORE the work: an output that exists as the wrong kind, a
  folder that cannot be created or written (permissions, read-only file system: tested by creating and
  removing a file there), or an existing file without ``overwrite`` is a one-line ``UserError``.
- ``atomic_path`` / ``atomic_write_bytes`` / ``atomic_write_text`` write through a temporary sibling and
  ``os.replace``: a reader never sees half a file, and a failed write leaves the old file as it was.
- ``replace_folder`` renames a finished staging folder over its target (component and pipeline folders):
  an existing target is moved aside first, restored if the rename fails, and removed only after it.
- ``staged_files`` writes a set of files (tar shards) into a hidden staging folder and moves them in at the
  end; with ``overwrite`` the old set is removed only once the new one is complete.

A failure to write after a long run (disk full, folder removed meanwhile, ...) is one ``UserError`` line
that says which file was not written. Standard library only: importable on any machine.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from videopoet.errors import UserError

PathLike = str | os.PathLike
Kind = Literal["file", "dir"]
OVERWRITE_HINT = "pass --overwrite to replace it, or choose another path"


def check_output(path: PathLike, *, kind: Kind = "file", overwrite: bool = False) -> Path:
    """Refuse (one-line UserError) an output ``path`` the work could not write, before the work starts.

    ``kind="file"``: a folder (or device, ...) at ``path`` is refused; an existing file is refused unless
    ``overwrite``. ``kind="dir"``: a non-folder at ``path`` is refused; an existing folder is fine (what may
    be replaced inside it is checked per file). In both cases the folder the output goes in must exist or be
    creatable, and be writable. Nothing is created. Returns ``Path(path)``.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"check_output: kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path).expanduser()
    if kind == "dir":
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} exists and is not a folder; pass a folder path")
        _check_writable_folder(path)
        return path
    _check_file_slot(path, overwrite)
    _check_writable_folder(path.parent)
    return path


def check_outputs(paths: Iterable[PathLike], *, overwrite: bool = False) -> list[Path]:
    """``check_output(kind="file")`` for several files (one writability test per folder). The error names the
    first existing file and how many of the outputs already exist."""
    paths = [Path(p).expanduser() for p in paths]
    existing = [p for p in paths if p.exists() and not p.is_dir()]
    for p in paths:
        _check_file_slot(p, overwrite=True)  # wrong kinds first: --overwrite cannot fix those
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of this run's outputs)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]} already exists{more}; {OVERWRITE_HINT}")
    for folder in dict.fromkeys(p.parent for p in paths):
        _check_writable_folder(folder)
    return paths


def _check_file_slot(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass a file path (or remove the folder)")
    if path.exists() and not path.is_file():
        raise UserError(f"{path} exists and is not a regular file; pass another path")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; {OVERWRITE_HINT}")


def _check_writable_folder(folder: Path) -> None:
    """The folder, or its nearest existing ancestor (where the missing folders would be made), must be a
    folder in which a file can be created now."""
    probe_in = folder
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise UserError(f"cannot create {folder}: {probe_in} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".videopoet-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        where = folder if probe_in == folder else f"{folder} (in {probe_in})"
        raise UserError(f"cannot write in {where}: {_reason(e)}") from None


def write_error(path: PathLike, e: OSError) -> UserError:
    """The one line for a write that failed after the work: which file was not written, and why."""
    return UserError(f"could not write {path}: {_reason(e)}")


def _reason(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (e.strerror or str(e) or type(e).__name__).splitlines()[0]


def _make_parent(path: Path) -> None:
    # A folder removed while the work ran is made again: the results are not lost to it.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix, so writers that pick the format from the name
    still work) for a writer to fill; on success it replaces ``path`` in one step, on failure it is
    removed and ``path`` is untouched. An OSError of the writer or the rename becomes ``write_error``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp{path.suffix}")
    _make_parent(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def replace_folder(stage: PathLike, target: PathLike) -> None:
    """Rename the finished folder ``stage`` to ``target``; an existing ``target`` is moved aside first,
    restored if the rename fails and removed only once ``stage`` is in place."""
    stage, target = Path(stage), Path(target)
    if not target.exists():
        os.replace(stage, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.replace(target, old)
    try:
        os.replace(stage, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    # The data reaches the disk before the rename publishes it (no empty file after a power cut).
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``); returns ``Path(path)``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``); returns ``Path(path)``."""
    return atomic_write_bytes(path, text.encode(encoding))


def existing_files(directory: PathLike, pattern: str) -> list[Path]:
    """Files directly in ``directory`` matching glob ``pattern`` (hidden ones left out), sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(pattern) if p.is_file() and not p.name.startswith("."))


@contextlib.contextmanager
def staged_files(directory: PathLike, pattern: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``directory`` for the files of one set (e.g. ``shard-*.tar``).

    On success the set's files replace those of an earlier set matching ``pattern`` (refused without
    ``overwrite``; other files in ``directory`` are never touched). On failure the completed files are kept
    (moved in) when ``directory`` holds no earlier set, and dropped when they would mix with one, which
    stays as it was. Call ``check_output(directory, kind="dir")`` and ``existing_files`` before the work.
    """
    directory = Path(directory)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
    except OSError as e:
        raise UserError(f"cannot write in {directory}: {_reason(e)}") from None
    try:
        try:
            yield stage
        except BaseException:
            if not existing_files(directory, pattern):
                _move_in(stage, directory, pattern)
            raise
        old = existing_files(directory, pattern)
        if old and not overwrite:
            raise UserError(f"{directory} already holds {old[0].name} (written meanwhile?); {OVERWRITE_HINT}")
        try:
            for p in old:
                p.unlink()
        except OSError as e:
            raise UserError(f"could not replace {directory}/{pattern}: {_reason(e)}") from None
        _move_in(stage, directory, pattern)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: a run that wrote nothing leaves no folder behind


def _move_in(stage: Path, directory: Path, pattern: str) -> None:
    for p in existing_files(stage, pattern):
        try:
            os.replace(p, directory / p.name)
        except OSError as e:
            raise write_error(directory / p.name, e) from None
