"""Built-in dataset: a folder with one subfolder of images per class.

```
data/
  cats/  a.jpg  b.png ...
  dogs/  c.webp  sub/d.bmp ...
```

Images are found recursively inside each class folder; hidden files and folders are
ignored. A small folder (up to ``EAGER_CHECK_FILES`` images) is decoded once when it is
opened, so unreadable files are skipped and reported before training starts; the results
are kept per folder in the workbench's cache folder (``image-checks/``), and a file whose
size and modification time are unchanged is not decoded again by a later run.

A bigger folder is only listed and stat'ed when opened (200,000 files: about a second, no
decode): each image is checked when it is first read. A file that does not decode then is
skipped with the same message (the next readable image of its class stands in, so batches
stay the same on every run and resume) and recorded, and later opens list it as skipped.
It stays in the item list, so the split and the data fingerprint do not depend on when
a bad file was found.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from workbench.data import Item, LabelledImages, check_val_split, stratified_split
from workbench.errors import WorkbenchError
from workbench.image_checks import MAX_ASPECT, MAX_PIXELS, decode_problem, describe_error, read_unreadable_log
from workbench.plan import DataConfig

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
# Operating-system clutter that is neither an image nor worth a warning.
_IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini", "@eaDir"})
_CHECK_CACHE_LIMIT = 200_000
# Folders with more images than this are checked at first read instead of when opened (decoding
# 2,000 small images takes about a second; 200,000 take minutes).
EAGER_CHECK_FILES = int(os.environ.get("WORKBENCH_EAGER_CHECK_FILES", 2000))
__all__ = ["MAX_ASPECT", "MAX_PIXELS", "EAGER_CHECK_FILES", "ImageFolderSource", "check_image"]


class ImageFolderSource:
    name = "folder"
    title = "Image folder (one sub-folder per class)"
    path_kind = "folder"

    def open(self, config: DataConfig, base_dir: Path | None = None) -> LabelledImages:
        if not config.path:
            raise WorkbenchError('no data folder set: set [data] path to a folder with one subfolder per class '
                                 '(or use dataset = "digits" for the built-in demo)')
        root = _resolve(config.path, base_dir)
        train_scan = _scan(root, "data folder")
        classes = sorted(train_scan.files)
        index = {c: i for i, c in enumerate(classes)}
        problems = list(train_scan.problems)
        skipped = train_scan.skipped
        log = _record_path(root).with_suffix(".unreadable.jsonl")
        val_scan = None
        if config.val_path:
            val_root = _resolve(config.val_path, base_dir)
            if val_root == root:
                raise WorkbenchError(f"val_path and path are the same folder ({root}); validation images must "
                                     "differ from training images")
            val_scan = _scan(val_root, "validation folder", allow_empty_classes=True)
        listed = sum(map(len, train_scan.files.values())) + (
            sum(map(len, val_scan.files.values())) if val_scan is not None else 0)
        eager = listed <= EAGER_CHECK_FILES
        check = _check_all if eager else _stat_all
        if not eager:
            problems.append(f"note: {listed:,} images listed; each is checked when first read "
                            "(an unreadable one is then skipped and recorded)")

        by_class = check(root, train_scan.files, "", problems, log)
        skipped += sum(n for _, n in by_class.values())
        for c in classes:
            if not any(checked.error is None for _, checked in by_class[c][0]):
                bad = by_class[c][1]
                detail = f" ({bad} unreadable file{'s' if bad != 1 else ''} skipped)" if bad else ""
                raise WorkbenchError(f"class folder {c}/ in {root} has no images{detail}")
        all_items = [item for c in classes for item in _items(root, by_class[c][0], index[c])]

        if val_scan is not None:
            val_root = val_scan.root
            unknown = sorted(set(val_scan.files) - set(classes))
            if unknown:
                raise WorkbenchError(f"validation folder {val_root} has class {unknown[0]!r} that the data folder "
                                     f"{root} does not have (classes: {', '.join(classes)})")
            problems += val_scan.problems
            skipped += val_scan.skipped
            val_checked = check(val_root, val_scan.files, " in the validation folder", problems, log)
            skipped += sum(n for _, n in val_checked.values())
            train = all_items
            val = [item for c in sorted(val_checked) for item in _items(val_root, val_checked[c][0], index[c])]
            source = f"{root} (validation: {val_root})"
        else:
            check_val_split(config.val_split)
            train_idx, val_idx = stratified_split([it.label for it in all_items], len(classes),
                                                  config.val_split, config.seed, classes)
            train = [all_items[i] for i in train_idx]
            val = [all_items[i] for i in val_idx]
            source = str(root)
        return LabelledImages(classes, train, val, problems, source, skipped, unreadable_log=log)


@dataclass
class _Scan:
    root: Path
    files: dict[str, list[Path]]  # class → image-suffixed files, sorted by relative path
    problems: list[str]
    skipped: int


def _resolve(value: str, base_dir: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve()


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES


def _scan(root: Path, what: str, allow_empty_classes: bool = False) -> _Scan:
    """Class subfolders of ``root`` and the image files in each (not decoded yet)."""
    if not root.exists():
        raise WorkbenchError(f"{what} {root} does not exist")
    if not root.is_dir():
        table = root.suffix.lower() in (".npz", ".csv", ".tsv")
        raise WorkbenchError(f"{what} {root} is not a folder"
                             + ('; for a feature table set [data] dataset = "table"' if table else ""))
    entries = sorted((e for e in root.iterdir() if not _hidden(e.name)), key=lambda e: e.name)
    class_dirs = [e for e in entries if e.is_dir()]
    if not class_dirs:
        n_loose = sum(1 for e in entries if e.suffix.lower() in IMAGE_SUFFIXES)
        if n_loose:
            raise WorkbenchError(f"{what} {root} has {n_loose} image(s) but no class subfolders; put each class's "
                                 f"images in its own subfolder ({root.name}/<class>/image.jpg)")
        if not entries:
            raise WorkbenchError(f"{what} {root} is empty; expected one subfolder of images per class")
        raise WorkbenchError(f"{what} {root} has no class subfolders; expected one subfolder of images per class")
    files: dict[str, list[Path]] = {}
    problems: list[str] = []
    skipped = 0
    for loose in (e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES):
        skipped += 1
        problems.append(f"skipped {loose.name}: not inside a class folder")
    class_reals = {c.name: os.path.realpath(c) for c in class_dirs}
    for name, real in class_reals.items():
        same = [other for other, r in class_reals.items() if other != name and r == real]
        if same:
            raise WorkbenchError(f"class folders {name}/ and {same[0]}/ in {root} are the same folder (one links to "
                                 "the other); remove the link")
    visited: set[str] = set(class_reals.values())
    root_real = os.path.realpath(root)
    for class_dir in class_dirs:
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            kept = []
            for d in (d for d in dirnames if not _hidden(d)):
                why = _link_problem(os.path.realpath(os.path.join(dirpath, d)), class_dir.name, class_reals,
                                    root_real, visited)
                if why:
                    problems.append(f"skipped {_rel(Path(dirpath) / d, root)}/: {why}")
                else:
                    kept.append(d)
            dirnames[:] = kept
            folder = Path(dirpath)
            for filename in filenames:
                if _hidden(filename):
                    continue
                path = folder / filename
                if os.path.splitext(filename)[1].lower() in IMAGE_SUFFIXES:
                    found.append(path)
                else:
                    skipped += 1
                    problems.append(f"skipped {_rel(path, root)}: not an image file "
                                    f"({path.suffix or 'no suffix'}; expected PNG, JPEG, WebP or BMP)")
        # Sort by relative path so the split never depends on file-system order.
        found.sort(key=lambda p: _rel(p, root))
        if not found and not allow_empty_classes:
            raise WorkbenchError(f"class folder {class_dir.name}/ in {root} has no images")
        files[class_dir.name] = found
    problems.sort()
    return _Scan(root, files, problems, skipped)


def _link_problem(real: str, class_name: str, class_reals: dict[str, str], root_real: str,
                  visited: set[str]) -> str | None:
    """Why a subfolder (maybe a symlink) must not be walked, or None; marks it visited otherwise.

    Each real folder is read once: a link back up the tree (``cat/loop -> ..``) would repeat
    images forever, and a link into another class would give that class's images the wrong label.
    """
    for other, other_real in class_reals.items():
        if other != class_name and (real == other_real or real.startswith(other_real + os.sep)):
            return f"links into class folder {other}/ (its images would be labelled {class_name})"
    if real == root_real or root_real.startswith(real + os.sep):
        return "a symlink loop (links back to the data folder or above it)"
    if real in visited:
        return "a symlink loop or a second link to a folder already read"
    visited.add(real)
    return None


def _rel(path: Path, root: Path) -> str:
    # String slicing: Path.relative_to costs ~20 µs, a third of opening a 200,000-image folder.
    text, prefix = str(path), str(root) + os.sep
    if text.startswith(prefix):
        rel = text[len(prefix):]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")
    return path.relative_to(root).as_posix()


@dataclass(frozen=True)
class _Checked:
    size: int
    mtime_ns: int
    error: str | None


# (path, size, mtime_ns) → result, so reopening an unchanged folder does not decode again.
_checked_cache: dict[tuple[str, int, int], _Checked] = {}


_ByClass = dict[str, tuple[list[tuple[Path, _Checked]], int]]


def _stat_all(root: Path, files: dict[str, list[Path]], where: str, problems: list[str], log: Path) -> _ByClass:
    """class → (every listed file with its stat and known problem, number known unreadable); no decoding.

    Known problems come from the folder's record and from reads that found a file unreadable (``log``);
    an unreadable file stays in the list (see the module docstring), marked, and is reported here.
    """
    recorded = _load_record(root)
    found = read_unreadable_log(log)
    out: _ByClass = {}
    for c in sorted(files):
        entries: list[tuple[Path, _Checked]] = []
        bad = 0
        for path in files[c]:
            try:
                st = path.stat()
                size, mtime_ns = st.st_size, st.st_mtime_ns
                known = recorded.get(_rel(path, root)) if recorded else None
                error = known.error if known is not None and (known.size, known.mtime_ns) == (size, mtime_ns) else None
                error = error or found.get((str(path), -1, size, mtime_ns)) or (None if size else "empty file")
            except OSError as exc:
                size, mtime_ns, error = 0, 0, f"cannot read ({describe_error(exc, path)})"
            if error is not None:
                bad += 1
                problems.append(f"skipped {_rel(path, root)}{where}: {error}")
            entries.append((path, _Checked(size, mtime_ns, error)))
        out[c] = (entries, bad)
    return out


def _check_all(root: Path, files: dict[str, list[Path]], where: str, problems: list[str],
               log: Path | None = None) -> _ByClass:
    """class → (readable files with their stat, number skipped); decodes each file once; appends skip messages."""
    flat = [p for c in sorted(files) for p in files[c]]
    recorded = _load_record(root)
    for path in flat:
        known = recorded.get(_rel(path, root))
        if known is not None:
            _checked_cache.setdefault((str(path), known.size, known.mtime_ns), known)
    if len(flat) > 16:
        # Pillow releases the GIL while decoding, so threads give real parallelism here.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = list(pool.map(check_image, flat))
    else:
        results = [check_image(p) for p in flat]
    checked = dict(zip(flat, results))
    current = {_rel(p, root): r for p, r in checked.items() if r.size or r.mtime_ns}  # (not a failed stat)
    if current != recorded:
        _save_record(root, current)
    out: dict[str, tuple[list[tuple[Path, _Checked]], int]] = {}
    for c in sorted(files):
        good: list[tuple[Path, _Checked]] = []
        bad = 0
        for path in files[c]:
            result = checked[path]
            if result.error is None:
                good.append((path, result))
            else:
                bad += 1
                problems.append(f"skipped {_rel(path, root)}{where}: {result.error}")
        out[c] = (good, bad)
    return out


def _record_path(root: Path) -> Path:
    from workbench.cache_dir import cache_root

    return cache_root() / "image-checks" / f"{hashlib.sha256(str(root).encode()).hexdigest()[:32]}.json"


def _check_rules() -> str:
    """What a recorded result depends on besides the file: a new Pillow or new limits check again."""
    import PIL

    return f"workbench-image-checks-1|Pillow {PIL.__version__}|{MAX_PIXELS}|{MAX_ASPECT}"


def _load_record(root: Path) -> dict[str, _Checked]:
    """The recorded checks of ``root``'s files (relative path → result); empty if none or unreadable."""
    try:
        data = json.loads(_record_path(root).read_text(encoding="utf-8"))
        if data.get("rules") != _check_rules() or data.get("root") != str(root):
            return {}
        return {rel: _Checked(int(size), int(mtime_ns), None if error is None else str(error))
                for rel, (size, mtime_ns, error) in data["files"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # no record yet, or a damaged one: every file is checked (and the record rewritten)


def _save_record(root: Path, checked: dict[str, _Checked]) -> None:
    """Record ``root``'s checks (atomically); a cache folder that cannot be written only costs the next run time."""
    from workbench.atomic import atomic_write_text
    from workbench.errors import WorkbenchError

    files = {rel: [c.size, c.mtime_ns, c.error] for rel, c in checked.items()}
    text = json.dumps({"rules": _check_rules(), "root": str(root), "files": files}, separators=(",", ":"))
    try:
        atomic_write_text(_record_path(root), text)
    except (OSError, WorkbenchError):
        pass


def check_image(path: Path) -> _Checked:
    """Stat and fully decode one file (JPEGs at 1/8 scale: still reads every byte)."""
    try:
        st = path.stat()
    except OSError as exc:
        return _Checked(0, 0, f"cannot read ({describe_error(exc, path)})")
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _checked_cache:
        return _checked_cache[key]
    error = decode_problem(path) if st.st_size else "empty file"
    result = _Checked(st.st_size, st.st_mtime_ns, error)
    if len(_checked_cache) >= _CHECK_CACHE_LIMIT:
        _checked_cache.clear()
    _checked_cache[key] = result
    return result


def _items(root: Path, files: list[tuple[Path, _Checked]], label: int) -> list[Item]:
    return [Item(label=label, name=_rel(p, root), path=p, size=c.size, mtime_ns=c.mtime_ns, problem=c.error)
            for p, c in files]
