"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

An interrupted write (crash, full disk, Ctrl-C) never leaves a half file under the final name,
and a failed write leaves no temp file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import WorkbenchError

# How writers that do not raise OSError report a full disk (torch's zip writer, safetensors' Rust writer).
_DISK_FULL_TEXT = ("no space left", "code: 28", "enospc", "file write failed", "inline_container")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target``, on failure it is removed."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise WorkbenchError(f"cannot write {target}: it is a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except (FileExistsError, NotADirectoryError):
        raise WorkbenchError(f"cannot write {target}: {_first_file(folder)} is a file, not a folder") from None
    except OSError as exc:
        raise WorkbenchError(_describe(target, exc)) from None
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
        os.replace(tmp, target)
    except OSError as exc:
        message = _describe(target, exc)  # free space as the write saw it, before the temp file goes
        tmp.unlink(missing_ok=True)
        raise WorkbenchError(message) from None
    except Exception as exc:
        full = disk_full(exc, folder)
        message = _no_space(target) if full else ""
        tmp.unlink(missing_ok=True)
        if full:
            raise WorkbenchError(message) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` means the disk under ``folder`` is full, however the writer library words it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(t in text for t in _DISK_FULL_TEXT) and _free_bytes(folder) < 64 * 2**20


def _describe(target: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _no_space(target)
    if exc.errno == errno.EROFS:
        return f"cannot write {target}: the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write {target}: permission denied"
    return f"cannot write {target}: {exc.strerror or exc}"


def _no_space(target: Path) -> str:
    free = _free_bytes(target.parent if str(target.parent) else Path("."))
    return f"cannot write {target}: no space left on device ({_size(free)} free there)"


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


def _first_file(folder: Path) -> Path:
    """The nearest ancestor of ``folder`` that exists as a file (what blocks creating it)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder

