"""Atomic outputs: everything is written under a temporary name and renamed into place."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pgt.errors import PgtError, one_line


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkdtemp/mkstemp create private (0700/0600) entries; outputs get the usual umask-based modes.
def _publish_mode(path: Path, base: int) -> None:
    os.chmod(path, base & ~_umask())


def _publish_tree(root: Path) -> None:
    """Give every entry under `root` the umask's modes (libraries such as safetensors write 0600)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            _publish_mode(Path(dirpath) / name, 0o777)
        for name in filenames:
            _publish_mode(Path(dirpath) / name, 0o666)


def refuse_existing(
    path: str | os.PathLike, *, overwrite: bool = False, what: str = "output directory", marker: str | None = None
) -> None:
    """An existing `path` is a one-line PgtError unless `overwrite` is set (check it before any long work).

    With `marker` (the record file every output of this kind holds: `substrate.json`, `manifest.json`),
    `overwrite` replaces only what pgt wrote: a directory holding `marker`, or an empty one (refuse_foreign).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    if marker is not None:  # first: --overwrite would not help with what pgt did not write
        refuse_foreign(path, marker, what=what)
    if not overwrite:
        raise PgtError(f"{what} {path} already exists (choose another --out or pass --overwrite)")


def refuse_foreign(
    path: str | os.PathLike, marker: str, *, what: str = "output directory", ignore: Iterable[str] = ()
) -> None:
    """Refuse, in one line, an output directory pgt may not write into or replace: a file, or a
    non-empty directory without the record file `marker`. Locks aside, and the entries named in
    `ignore` with their `.NAME.*` locks and temporaries (what a resumable command writes before its record)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        raise PgtError(f"{what} {path} is a file, not a directory pgt wrote; choose another --out")
    if (path / marker).is_file():
        return
    own = (*ignore,)
    foreign = sorted(
        entry.name
        for entry in path.iterdir()
        if entry.name != LOCK_FILE
        and entry.name not in own
        and not entry.name.startswith(tuple(f".{name}." for name in own))
    )
    if foreign:
        raise PgtError(
            f"{what} {path} was not written by pgt (it holds {foreign[0]} but no {marker}); pgt "
            "replaces or resumes only its own outputs: choose another --out"
        )


def refuse_existing_file(path: str | os.PathLike, *, overwrite: bool, what: str, ours: Callable[[Path], bool]) -> None:
    """`refuse_existing` for an output that is one file: `overwrite` replaces only a file that `ours`
    recognises as one pgt wrote (a report page, a result record), never a directory or a user's file."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise PgtError(f"{what} {path} already exists (choose another --out or pass --overwrite)")
    if path.is_symlink() or not path.is_file() or not ours(path):
        raise PgtError(
            f"{what} {path} was not written by pgt; --overwrite replaces only pgt's own outputs: choose another --out"
        )


def make_dirs(directory: str | os.PathLike) -> None:
    """`mkdir -p`, with a file in the way as a one-line PgtError (not FileExistsError)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), directory)
        raise PgtError(f"cannot create the directory {directory}: {blocker} is a file") from None


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, overwrite: bool = False, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes `out` only if the block succeeds.

    An existing `out` is an error unless `overwrite` is set, in which case it is
    replaced only after the new content is complete; with `marker`, only when it is
    a directory pgt wrote (refuse_existing).
    """
    out = Path(out)
    refuse_existing(out, overwrite=overwrite, marker=marker)
    make_dirs(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    _publish_mode(tmp, 0o777)
    try:
        yield tmp
        _publish_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / out.name)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    if path.is_dir():  # else the rename fails naming the temporary, not the path given
        raise PgtError(f"{path} is a directory; give a file name")
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    _publish_mode(Path(tmp), 0o666)
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _hash_file(digest: Any, path: str | os.PathLike) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    _hash_file(digest, path)
    return digest.hexdigest()


def files_sha256(paths: Iterable[str | os.PathLike]) -> str:
    """Hex sha256 over several files, in the given order: each file's name, then its bytes."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        _hash_file(digest, path)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON, atomically."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or malformed file into a one-line PgtError."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise PgtError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PgtError(f"{what} {path} is corrupt: {one_line(exc)}") from None


# Prefixes of the temporaries `atomic_dir`/`atomic_file` leave behind only when killed.
_TEMPORARY_MARKERS = (".tmp-", ".old-")
LOCK_FILE = ".lock"


def remove_stale_temporaries(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the `.NAME.tmp-*` / `.NAME.old-*` leftovers of killed writes directly inside `directory`
    (with `name`: only those of the output called `name`, so other outputs' live writes survive).

    Call it only while holding the directory's (or that output's) lock: a live writer's temporary looks the same.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    prefixes = tuple(f".{name}{marker}" for marker in _TEMPORARY_MARKERS) if name else None
    for entry in directory.iterdir():
        if (
            entry.name.startswith(prefixes)
            if prefixes
            else (entry.name.startswith(".") and any(marker in entry.name for marker in _TEMPORARY_MARKERS))
        ):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` for the block; a second holder gets a one-line error.

    The lock file records the holder's PID so the error can name it; the kernel releases
    the lock when the process dies, so a SIGKILLed run never leaves a stale lock. The holder
    removes the file when the block ends (still holding the lock), and a process that locked
    a file removed meanwhile tries again on the file now at `lock_path`.
    """
    lock_path = Path(lock_path)
    make_dirs(lock_path.parent)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PgtError(
                f"{what} is in use by another pgt process (PID {holder}); wait for it or choose another --out"
            ) from None
        if _same_file(fd, lock_path):
            break
        os.close(fd)  # the previous holder removed this file as we opened it
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # while the lock is held: no other process holds this file
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def run_lock(run_dir: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """The lock of a directory that a command works in for a long time (`RUN_DIR/.lock`)."""
    return exclusive_lock(Path(run_dir) / LOCK_FILE, f"{run_dir}")


def output_lock(out: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """The lock of an output that appears only at the end (`atomic_dir`): a sibling `.NAME.lock`."""
    out = Path(out)
    return exclusive_lock(out.parent / f".{out.name}{LOCK_FILE}", f"{out}")


def refuse_overlap(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], flag: str = "--out") -> None:
    """Refuse an output that equals, contains or lies inside any input (it would be destroyed)."""
    out_path = Path(out).resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if out_path == source or out_path in source.parents or source in out_path.parents:
            raise PgtError(f"{flag} {out} overlaps the input {item}; choose an output outside every input")


def check_writable(directory: str | os.PathLike) -> None:
    """Fail early, in one line, when `directory` (created if missing) cannot take new files."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pgt-write-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PgtError(f"cannot write to {directory}: {exc.strerror}") from None


# OS errors that are the environment's, not a bug: the CLI reports them in one line.
ENVIRONMENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EFBIG}
)
# Libraries written in Rust (safetensors, tokenizers) raise their own exception types that end in "os error N".
_RUST_OS_ERROR = re.compile(r"os error (\d+)\)?\s*$")


def environment_error(exc: BaseException) -> str | None:
    """The one-line message of an error the environment caused (a full disk, no permission, a file in
    the way), also inside a library such as safetensors; None for anything else."""
    if isinstance(exc, OSError):
        if exc.errno not in ENVIRONMENT_ERRNOS:
            return None
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    match = _RUST_OS_ERROR.search(str(exc))
    if match and int(match.group(1)) in ENVIRONMENT_ERRNOS:
        return f"{os.strerror(int(match.group(1)))} (while {type(exc).__name__} wrote a file; nothing was replaced)"
    return None
