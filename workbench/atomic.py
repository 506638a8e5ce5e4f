"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

An interrupted write (crash, full disk, Ctrl-C) never leaves a half file under the final name,
and a failed write leaves no temp file behind. Only a regular file (or nothing) is ever
replaced: a device, FIFO, socket or folder under the target name is refused before any temp
file is made beside it (``check_file_target``; ``check_folder_target`` for folder outputs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import DiskFullError, WorkbenchError

# How writers that do not raise OSError report a full disk (torch's zip writer, safetensors' Rust writer).
_FILE, _FOLDER = "a regular file", "a folder"
_DISK_FULL_TEXT = ("no space left", "code: 28", "enospc", "file write failed", "inline_container")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target``, on failure it is removed."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    check_file_target(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except (FileExistsError, NotADirectoryError):
        raise WorkbenchError(f"cannot write {target}: {_blocker(folder)}") from None
    except OSError as exc:
        raise (DiskFullError if _is_enospc(exc) else WorkbenchError)(_describe(target, exc)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    with contextlib.suppress(OSError):  # mkstemp makes 0600; a normal file honours the umask (0644 under 022)
        os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        # mkstemp makes 0600 (and some writers recreate the file): the final file should look like any other
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        check_file_target(target)  # again: something else may have appeared under the name meanwhile
        os.replace(tmp, target)
    except OSError as exc:
        message = _describe(target, exc)  # free space as the write saw it, before the temp file goes
        tmp.unlink(missing_ok=True)
        raise (DiskFullError if _is_enospc(exc) else WorkbenchError)(message) from None
    except Exception as exc:
        full = disk_full(exc, folder)
        message = _no_space(target) if full else ""
        tmp.unlink(missing_ok=True)
        if full:
            raise DiskFullError(message) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def scratch_folder(target: str | Path, folder_output: bool = False) -> Iterator[Path]:
    """A temp folder beside ``target`` (same file system, so a final rename is atomic), removed afterwards.

    ``target`` is checked first like ``atomic_path`` checks it (``check_folder_target`` for an output that is
    a folder): nothing is made beside a device or FIFO.
    """
    target = Path(target)
    check_folder_target(target) if folder_output else check_file_target(target)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder))
    except (FileExistsError, NotADirectoryError):
        raise WorkbenchError(f"cannot write {target}: {_blocker(folder)}") from None
    except OSError as exc:
        raise WorkbenchError(_describe(target, exc)) from None
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_file_target(target: str | Path) -> None:
    """Refuse a file target that exists as something other than a regular file, or that no file system can name."""
    target = Path(target)
    kind = _existing_kind(target)
    if kind not in (None, _FILE):
        raise WorkbenchError(f"cannot write {_short(target)}: it is {kind}, not a regular file "
                             "(only a regular file is ever replaced)")


def check_folder_target(target: str | Path, flag: str = "") -> None:
    """Refuse a folder target that exists as something other than a folder, or lies under a non-folder."""
    target = Path(target)
    shown = f"{flag} {_short(target)}" if flag else _short(target)
    kind = _existing_kind(target)
    if kind not in (None, _FOLDER):
        raise WorkbenchError(f"{shown} is {_noun(kind)}, not a folder")
    for parent in target.parents:
        kind = _existing_kind(parent)
        if kind == _FOLDER:
            return
        if kind is not None:
            raise WorkbenchError(f"{shown}: {_short(parent)} is {_noun(kind)}, not a folder")


def _existing_kind(path: Path) -> str | None:
    """What ``path`` is ("a regular file", "a folder", "a FIFO (named pipe)", ...), None when nothing is there. Raises WorkbenchError
    for a path too long to name."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is a file: the mkdir that follows says which
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise WorkbenchError(_too_long(path)) from None
        return None
    if stat.S_ISREG(mode):
        return _FILE
    if stat.S_ISDIR(mode):
        return _FOLDER
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _noun(kind: str) -> str:
    return "a file" if kind == _FILE else kind


def _too_long(path: Path) -> str:
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    limit = _name_max(path)
    why = (f"one name in it has {longest} bytes, the file system allows {limit}" if longest > limit
           else f"{len(os.fsencode(str(path)))} bytes in all, more than the system allows")
    return f"cannot write {_short(path)}: the path is too long ({why})"


def _name_max(path: Path) -> int:
    for candidate in (path, *path.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _short(path: Path, limit: int = 120) -> str:
    """``path`` for a message: long paths keep their start and end."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:50]}…{text[-60:]} ({len(text)} characters)"


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def _is_enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` means the disk under ``folder`` is full, however the writer library words it."""
    if _is_enospc(exc) or isinstance(exc, DiskFullError):
        return True
    text = str(exc).lower()
    return any(t in text for t in _DISK_FULL_TEXT) and _free_bytes(folder) < 64 * 2**20


def _describe(target: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _no_space(target)
    if exc.errno == errno.EROFS:
        return f"cannot write {target}: the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {_short(target)}: permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return _too_long(target)
    return f"cannot write {_short(target)}: {exc.strerror or exc}"


def _no_space(target: Path) -> str:
    free = _free_bytes(target.parent if str(target.parent) else Path("."))
    return f"cannot write {target}: no space left on device ({_size(free)} free there)"


def disk_full_message(folder: Path, needed: int) -> str:
    """"the file system at MOUNT (holding FOLDER) is full: N free, about M needed"."""
    mount = folder.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    where = f"the file system at {mount}" + (f" (holding {_short(folder)})" if mount != folder.resolve() else "")
    return f"{where} is full: {_size(_free_bytes(folder))} free, about {_size(needed)} needed"


def _free_bytes(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"


def _blocker(folder: Path) -> str:
    """Why ``folder`` cannot be made: the nearest ancestor that exists as something other than a folder."""
    for candidate in (folder, *folder.parents):
        kind = _existing_kind(candidate)
        if kind is not None:
            return f"{_short(candidate)} is {_noun(kind)}, not a folder"
    return f"{_short(folder)} cannot be made"

