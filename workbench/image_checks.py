"""Whether an image decodes: the one check (and wording) used at open and at read, and the record of failures.

``decode_problem`` is what an image folder runs on each file when it is opened (small folders) and
what a read that fails re-runs for its message, so a skipped file is described the same way
whenever it was found. Reads that find an unreadable item append it to a JSON-lines record
(``record_unreadable``); the next open of the same data reads it back (``read_unreadable_log``).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from workbench.errors import WorkbenchError

# Pillow would decode these to gigabytes from a file of a few hundred bytes (a "decompression bomb").
MAX_PIXELS = 8192 * 8192
MAX_ASPECT = 50


class UnreadableImage(WorkbenchError):
    """An image that exists in the listing but does not decode (or is gone); ``reason`` says why, briefly."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read {name}: {reason}")
        self.name, self.reason = name, reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (UnreadableImage, (self.name, self.reason))


def size_problem(width: int, height: int) -> str | None:
    """Refuse pixel bombs before decoding: a tiny file can declare a huge image."""
    if width * height > MAX_PIXELS:
        return f"image too large ({width}×{height} = {width * height:,} pixels; at most {MAX_PIXELS:,})"
    if min(width, height) >= 1 and max(width, height) > MAX_ASPECT * min(width, height):
        return f"extreme aspect ratio ({width}×{height}; at most {MAX_ASPECT}:1)"
    return None


def describe_error(exc: BaseException, path: Path | None = None) -> str:
    """A short reason without the absolute path PIL likes to repeat."""
    text = str(exc).strip() or type(exc).__name__
    if path is not None:
        text = text.replace(repr(str(path)), "").replace(str(path), "")
    return " ".join(text.split()).rstrip(" :") or type(exc).__name__


def read_unreadable_log(log: Path) -> dict[tuple[str, int, int, int], str]:
    """(path, offset, size, mtime_ns) → reason, for items that reads found unreadable (``ImageDataset`` writes them)."""
    found: dict[tuple[str, int, int, int], str] = {}
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return found
    for line in lines:
        try:
            entry = json.loads(line)
            key = (str(entry["path"]), int(entry["offset"]), int(entry["size"]), int(entry["mtime_ns"]))
            found[key] = str(entry["reason"])
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a crash: that item is found again at its next read
    return found


def decode_problem(source: Path | io.BytesIO) -> str | None:
    """Why an image file (or its bytes) does not decode, or None; the one check (and wording) everywhere."""
    name = source if isinstance(source, Path) else None
    try:
        with Image.open(source) as img:
            error = size_problem(img.width, img.height)
            if error is not None:
                return error
            img.verify()  # checks PNG chunk CRCs; does not decode pixels
    except Exception as exc:  # Pillow raises many exception types on corrupt files
        return f"cannot decode ({describe_error(exc, name)})"
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        with Image.open(source) as img:
            if img.width < 1 or img.height < 1:
                return f"cannot decode (image size {img.width}×{img.height})"
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            # verify() alone misses truncated JPEG/WebP data: decode to be sure.
            img.load()
    except Exception as exc:  # Pillow raises many exception types on corrupt files
        return f"cannot decode ({describe_error(exc, name)})"
    return None


def record_unreadable(log: Path, item: Any, reason: str) -> None:
    """Append ``item`` (a ``workbench.data.Item``) to ``log``; an unwritable folder only costs the next open time."""
    line = json.dumps({"path": str(item.path), "offset": item.offset, "size": item.size,
                       "mtime_ns": item.mtime_ns, "reason": reason}) + "\n"
    try:  # one short O_APPEND write: lines from several loader workers do not interleave
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass
