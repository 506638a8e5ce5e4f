"""Built-in dataset: WebDataset tar shards (a folder of ``.tar`` files or a brace pattern).

```
shards/
  classes.json            ["cat", "dog", ...]   (optional: class names, index = label)
  train-000000.tar        000017.jpg  000017.cls  000018.png  000018.cls ...
  train-000001.tar
  val-000000.tar
```

Samples follow WebDataset's convention: the members of one sample share a key
(``000017.jpg`` + ``000017.cls``, split with webdataset's own ``base_plus_ext``). The
label is the ``.cls`` member: a class index (names from ``classes.json`` beside the
shards, else the indices themselves) or a class name (names then sorted). Brace patterns
(``shards/train-{000000..000099}.tar``) are expanded by webdataset's ``expand_urls``.

Validation is a fixed set of shards: ``[data] val_path`` (a folder or pattern), or else
the last ``round(shards × val_split)`` shards by name. Samples are never split across
training and validation, so adding shards never moves a sample from one side to the other.

When opened, each shard's tar headers are read (not the image bytes: a seek past each
member) to index where every image's bytes lie; a read then seeks there and decodes,
like a file of an image folder, so the trainer's seeded sampler, exact resume (the
checkpoint's position in the epoch's order says which shard and offset comes next), the
feature cache and the fingerprint-on-resume rule work as for folders. No shard stays open:
memory is the index (one small record per sample), flat in the number of shards. An image
that does not decode is skipped at its first read and recorded, as in a big image folder.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from workbench.data import Item, LabelledImages, check_val_split
from workbench.errors import WorkbenchError
from workbench.image_checks import read_unreadable_log
from workbench.plan import DataConfig

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
CLASS_NAMES_FILE = "classes.json"


class TarShardsSource:
    name = "shards"
    title = "WebDataset tar shards (a folder of .tar files or a {000..099} pattern)"
    path_kind = "folder"

    def open(self, config: DataConfig, base_dir: Path | None = None) -> LabelledImages:
        if not config.path:
            raise WorkbenchError("no shards set: set [data] path to a folder of .tar shards or a pattern such as "
                                 "shards/train-{000000..000009}.tar")
        train_shards = shard_list(config.path, base_dir, "shards")
        if config.val_path:
            val_shards = shard_list(config.val_path, base_dir, "validation shards")
            shared = sorted(set(train_shards) & set(val_shards))
            if shared:
                raise WorkbenchError(f"shard {shared[0]} is both a training and a validation shard; validation "
                                     "shards must differ from training shards")
        else:
            check_val_split(config.val_split)
            n_val = int(len(train_shards) * config.val_split + 0.5)
            if config.val_split > 0 and n_val == 0:
                n_val = 1
            if n_val >= len(train_shards) and n_val > 0:
                raise WorkbenchError(f"val_split = {config.val_split:g} of {len(train_shards)} shard"
                                     f"{'s' if len(train_shards) != 1 else ''} leaves no training shard; the "
                                     "validation set is whole shards: add shards, lower val_split or set val_path")
            train_shards, val_shards = train_shards[:len(train_shards) - n_val], train_shards[len(train_shards) - n_val:]
        names = _class_names_file(train_shards[0].parent)
        train_index = [sample for shard in train_shards for sample in index_shard(shard)]
        val_index = [sample for shard in val_shards for sample in index_shard(shard)]
        classes = names if names is not None else _classes_from_labels(train_index)
        lookup = {c: i for i, c in enumerate(classes)}
        train = [_item(s, classes, lookup, "training") for s in train_index]
        val = [_item(s, classes, lookup, "validation") for s in val_index]
        log = _log_path(train_shards)
        problems, skipped = [], 0
        known = read_unreadable_log(log)
        for item in (*train, *val):
            assert item.path is not None
            reason = known.get((str(item.path), item.offset, item.size, item.mtime_ns))
            if reason is not None:
                item.problem = reason
                skipped += 1
                problems.append(f"skipped {item.name}: {reason}")
        where = _describe(train_shards)
        source = f"{where} (validation: {_describe(val_shards)})" if val_shards else where
        return LabelledImages(classes, train, val, problems, source, skipped, unreadable_log=log)


@dataclass(frozen=True)
class Sample:
    """Where one sample's image lies in its shard, and its raw label (the ``.cls`` text)."""

    shard: Path
    key: str
    offset: int
    size: int
    mtime_ns: int
    label: str


def shard_list(value: str, base_dir: Path | None, what: str) -> list[Path]:
    """The shards ``value`` names: every ``*.tar`` in a folder (sorted), or a brace pattern / list, in order."""
    from webdataset.shardlists import expand_urls

    def resolve(text: str) -> Path:
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return path.resolve()

    folder = resolve(value)
    if folder.is_dir():
        shards = sorted(p for p in folder.iterdir() if p.suffix == ".tar" and not p.name.startswith("."))
        if not shards:
            raise WorkbenchError(f"{what} folder {folder} has no .tar files")
        return shards
    shards = [resolve(text) for text in expand_urls(value)]
    missing = [p for p in shards if not p.is_file()]
    if missing:
        extra = f" (and {len(missing) - 1} more of {len(shards)})" if len(missing) > 1 else ""
        raise WorkbenchError(f"{what}: {missing[0]} does not exist{extra}")
    return shards


def _members_fast(shard: Path, file_size: int) -> list[tuple[str, int, int, bytes | None]] | None:
    """(name, data offset, size, data of a ``.cls`` member) from plain ustar headers, or None when the shard
    needs ``tarfile`` (pax or GNU long-name headers, an odd header, a cut): ~20× faster than ``tarfile``."""
    members: list[tuple[str, int, int, bytes | None]] = []
    offset = 0
    with open(shard, "rb", buffering=0) as raw:
        while True:
            raw.seek(offset)
            header = raw.read(tarfile.BLOCKSIZE)
            if len(header) < tarfile.BLOCKSIZE:
                return None
            if header == bytes(tarfile.BLOCKSIZE):
                return members  # the end-of-archive marker
            if header[257:262] != b"ustar" or header[156:157] not in (b"0", b"\0", b"5"):
                return None
            try:
                size = int(header[124:136].rstrip(b"\0 ").decode() or "0", 8)
            except ValueError:
                return None
            name = header[0:100].rstrip(b"\0").decode("utf-8", "replace")
            prefix = header[345:500].rstrip(b"\0").decode("utf-8", "replace")
            name = f"{prefix}/{name}" if prefix else name
            start = offset + tarfile.BLOCKSIZE
            if start + size > file_size:
                return None
            data = raw.read(size) if header[156:157] != b"5" and name.endswith(".cls") else None
            if header[156:157] != b"5":
                members.append((name, start, size, data))
            offset = start + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _members_tarfile(shard: Path, file_size: int) -> list[tuple[str, int, int, bytes | None]]:
    """The same as ``_members_fast`` through ``tarfile`` (any tar dialect); raises on a damaged shard."""
    members: list[tuple[str, int, int, bytes | None]] = []
    try:
        tar = tarfile.open(shard, "r:")  # plain tar only: compressed shards have no offsets to seek to
    except tarfile.ReadError as exc:
        raise WorkbenchError(f"shard {shard} is not a tar file ({exc}); shards must be uncompressed .tar "
                             "archives in WebDataset layout") from None
    try:
        with tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > file_size:
                    raise _Truncated(member.name)
                data = None
                if member.name.endswith(".cls"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    data = handle.read()
                members.append((member.name, member.offset_data, member.size, data))
            end = tar.offset  # where the end-of-archive marker (zero blocks) must be
        with open(shard, "rb") as raw:
            raw.seek(end)
            if raw.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                # tarfile stops quietly at a cut between two members; a complete tar ends in zero blocks.
                raise _Truncated(f"after {members[-1][0] if members else 'the start'}")
    except _Truncated as cut:
        where = cut.args[0] if cut.args[0].startswith("after") else f"member {cut.args[0]} ends past the end"
        raise WorkbenchError(f"shard {shard} is truncated ({where}; {file_size:,} bytes, no end-of-archive "
                             "marker); copy the shard again") from None
    except (tarfile.TarError, EOFError) as exc:
        raise WorkbenchError(f"shard {shard} is truncated or damaged ({exc}); copy the shard again") from None
    return members


def index_shard(shard: Path) -> list[Sample]:
    """Every sample of ``shard`` in file order, reading tar headers and ``.cls`` members only."""
    from webdataset.tariterators import base_plus_ext

    try:
        st = shard.stat()
        members = _members_fast(shard, st.st_size)
    except OSError as exc:
        raise WorkbenchError(f"cannot read shard {shard}: {exc.strerror or exc}") from None
    if members is None:
        members = _members_tarfile(shard, st.st_size)
    images: dict[str, tuple[int, int]] = {}
    labels: dict[str, str] = {}
    order: list[str] = []
    for name, offset, size, data in members:
        key, ext = base_plus_ext(name)
        if key is None or ext is None or os.path.basename(key).startswith("__"):
            continue  # no extension, or WebDataset metadata (__key__ …)
        ext = ext.lower()
        if key not in images and key not in labels:
            order.append(key)
        if ext in IMAGE_EXTENSIONS:
            images.setdefault(key, (offset, size))
        elif ext == "cls" and data is not None:
            labels[key] = data.decode("utf-8", "replace").strip()
    samples = []
    for key in order:
        if key not in images:
            raise WorkbenchError(f"shard {shard}: sample {key} has no image (.{', .'.join(IMAGE_EXTENSIONS)})")
        if not labels.get(key):
            raise WorkbenchError(f"shard {shard}: sample {key} has no label (no {key}.cls member, or an empty "
                                 "one); every sample needs its class in a .cls member")
        offset, size = images[key]
        samples.append(Sample(shard, key, offset, size, st.st_mtime_ns, labels[key]))
    return samples


class _Truncated(Exception):
    pass


def _class_names_file(folder: Path) -> list[str] | None:
    """Class names from ``classes.json`` (a list, or ``{"classes": [...]}``) beside the shards, if there is one."""
    path = folder / CLASS_NAMES_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"cannot read class names from {path}: {exc}") from None
    names = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise WorkbenchError(f"{path} must hold a list of class names (index = label), such as [\"cat\", \"dog\"]")
    return list(names)


def _classes_from_labels(samples: list[Sample]) -> list[str]:
    """Without ``classes.json``: class indices 0..max as names, or the sorted class names the ``.cls`` hold."""
    raw = {s.label for s in samples}
    if raw and all(label.isdigit() for label in raw):
        return [str(i) for i in range(max(int(label) for label in raw) + 1)]
    return sorted(raw)


def _item(sample: Sample, classes: list[str], lookup: dict[str, int], split: str) -> Item:
    raw = sample.label
    if raw.isdigit() and raw not in lookup:
        label = int(raw)
        if label >= len(classes):
            raise WorkbenchError(f"shard {sample.shard}: sample {sample.key} has class index {label}, but there "
                                 f"are {len(classes)} classes ({_show(classes)})")
    elif raw in lookup:
        label = lookup[raw]
    else:
        where = "the training shards" if split == "validation" else CLASS_NAMES_FILE
        raise WorkbenchError(f"{split} shard {sample.shard}: sample {sample.key} has class {raw!r}, which "
                             f"{where} do{'es' if where == CLASS_NAMES_FILE else ''} not have "
                             f"(classes: {_show(classes)})")
    return Item(label=label, name=f"{sample.shard.name}:{sample.key}", path=sample.shard, size=sample.size,
                mtime_ns=sample.mtime_ns, offset=sample.offset)


def _show(classes: list[str]) -> str:
    return ", ".join(classes) if len(classes) <= 8 else ", ".join(classes[:6]) + f", … {classes[-1]}"


def _describe(shards: list[Path]) -> str:
    if len(shards) == 1:
        return str(shards[0])
    return f"{len(shards)} shards {shards[0]} … {shards[-1].name}"


def _log_path(shards: list[Path]) -> Path:
    import hashlib

    from workbench.cache_dir import cache_root

    digest = hashlib.sha256("\n".join(map(str, shards)).encode()).hexdigest()[:32]
    return cache_root() / "image-checks" / f"shards-{digest}.unreadable.jsonl"
