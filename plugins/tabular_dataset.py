"""Built-in dataset: a feature table in one file, for models whose input is (N, features).

- ``.npz``: array ``x`` (rows × features, numbers) and ``y`` (one label per row: integers or
  strings); optional ``labels`` (class names, then ``y`` holds indices into it).
- ``.csv`` (or ``.tsv``): one row per sample, the last column is the label (a class name or an
  integer), the others numbers; a header row is optional (recognised by non-numeric feature cells).

Integer labels become classes in numeric order (``1, 2, 10``); string labels in sorted order.
The split is the image datasets' (stratified, seeded per class) unless ``val_path`` names a
second table. Every error names the file and, where it can, the line or row and the column.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.data import check_val_split, stratified_split
from workbench.errors import DataError
from workbench.plan import DataConfig
from workbench.tables import LabelledTable

SUFFIXES = (".npz", ".csv", ".tsv")


@dataclass
class RawTable:
    """One file as read: float32 features, the raw labels, optional class names, where each row came from."""

    path: Path
    x: np.ndarray
    y: np.ndarray  # int64, or str (U) labels
    names: list[str] | None  # npz ``labels``: y indexes into it
    row_names: list[str]  # "line 7" (CSV) or "row 6" (npz), for messages
    width_note: str
    problems: list[str]
    columns: list[str] | None = None  # CSV header (or "column 3"), for messages


class TableSource:
    name = "table"
    title = "Feature table (.npz arrays x, y or .csv with the label last)"
    path_kind = "file"
    file_filter = "Feature tables (*.npz *.csv *.tsv);;All files (*)"

    def open(self, config: DataConfig, base_dir: Path | None = None) -> LabelledTable:
        if not config.path:
            raise DataError("no table file set: set [data] path to a .npz file (arrays x and y) or a .csv file "
                            "(last column the label)")
        path = _resolve(config.path, base_dir)
        train = read_table(path, "table")
        classes, y, notes = encode_labels(train)
        problems = train.problems + notes
        if config.val_path:
            val_path = _resolve(config.val_path, base_dir)
            if val_path == path:
                raise DataError(f"val_path and path are the same file ({path}); validation rows must differ from "
                                "training rows")
            val = read_table(val_path, "validation table")
            if val.x.shape[1] != train.x.shape[1]:
                raise DataError(f"validation table {val_path} has {val.x.shape[1]} feature columns{val.width_note}, "
                                f"the training table {path} has {train.x.shape[1]}{train.width_note}")
            y_val = encode_like(val, classes, train)
            problems += val.problems
            return LabelledTable(classes, train.x, y, val.x, y_val, problems, f"{path} (validation: {val_path})",
                                 0, train.width_note)
        check_val_split(config.val_split)
        train_idx, val_idx = stratified_split(y.tolist(), len(classes), config.val_split, config.seed, classes,
                                              unit="row")
        return LabelledTable(classes, train.x[train_idx], y[train_idx], train.x[val_idx], y[val_idx], problems,
                             str(path), 0, train.width_note)


def _resolve(value: str, base_dir: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve()


def read_table(path: Path, what: str = "table") -> RawTable:
    """Read and check one ``.npz``/``.csv``/``.tsv`` file: numbers only, finite, rectangular, not empty."""
    if not path.exists():
        raise DataError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; the table dataset reads one .npz or .csv file "
                        '(for a folder of images use [data] dataset = "folder")')
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{what} {path} is not a .npz or .csv file (suffix {suffix or 'none'})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes)")
    raw = _read_npz(path) if suffix == ".npz" else _read_csv(path, "\t" if suffix == ".tsv" else None)
    if raw.x.shape[0] == 0:
        raise DataError(f"{what} {path} has no rows")
    if raw.x.shape[1] == 0:
        raise DataError(f"{what} {path} has no feature columns{raw.width_note}")
    _check_finite(raw)
    return raw


def _read_npz(path: Path) -> RawTable:
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it
        raise DataError(f"cannot read {path}: not a .npz archive (np.savez writes a zip of .npy arrays; this file "
                        "is not one, or it is truncated)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path}: not a valid .npz file ({_one_line(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not a .npz archive; save it with np.savez(path, x=..., y=...)")
    with archive:
        keys = list(archive.files)
        if "x" not in keys or "y" not in keys:
            hint = ""
            if {"X", "Y"} & set(keys) or {"X", "y"} <= set(keys):
                hint = " (names are case-sensitive: use lower-case x and y)"
            raise DataError(f"{path} has array{'s' if len(keys) != 1 else ''} {', '.join(keys) or 'none'}; expected "
                            f"x (features, rows × features) and y (one label per row), optionally labels "
                            f"(class names){hint}")
        x = _npz_array(archive, path, "x")
        y = _npz_array(archive, path, "y")
        names_array = _npz_array(archive, path, "labels") if "labels" in keys else None
        ignored = [k for k in keys if k not in ("x", "y", "labels")]
    problems = [f"{path.name}: ignored array{'s' if len(ignored) > 1 else ''} {', '.join(ignored)} "
                "(the table dataset reads x, y and labels)"] if ignored else []
    if x.ndim != 2:
        if x.ndim == 1:
            raise DataError(f"{path}: x has shape {x.shape}; expected rows × features (2-D): for one feature per "
                            f"row use shape ({x.shape[0]}, 1)")
        raise DataError(f"{path}: x has shape {x.shape}; a table's features must be 2-D (rows × features): flatten "
                        "them (x.reshape(len(x), -1)) or use an image dataset")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x holds {_dtype_name(x)}, not numbers; store the features as a float or integer "
                        "array")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: y has shape {y.shape}; expected one label per row, shape ({x.shape[0]},)")
    if len(y) != len(x):
        raise DataError(f"{path}: x has {len(x)} rows but y has {len(y)} labels; they must match")
    names: list[str] | None = None
    if names_array is not None:
        if names_array.ndim != 1 or names_array.dtype.kind not in "USiu":
            raise DataError(f"{path}: labels must be a 1-D array of class names, not {_dtype_name(names_array)} "
                            f"of shape {names_array.shape}")
        names = [_text(v) for v in names_array.tolist()]
    rows = [f"row {i}" for i in range(len(x))]
    return RawTable(path, x, _labels_from_npz(path, y, rows), names, rows, "", problems)


def _npz_array(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path}: {key} is an object array (pickled Python objects), which is not loaded for "
                            "safety; store numbers, or strings as a fixed-width string array (np.array(..., "
                            "dtype=str))") from None
        raise DataError(f"cannot read {key} from {path}: {_one_line(exc)}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {key} from {path}: {_one_line(exc)} (a truncated or damaged file)") from None


def _labels_from_npz(path: Path, y: np.ndarray, rows: list[str]) -> np.ndarray:
    if y.dtype.kind in "US":
        texts = np.asarray([_text(v).strip() for v in y.tolist()])
        empty = np.flatnonzero(texts == "")
        if len(empty):
            raise DataError(f"{path}: y is empty in {rows[int(empty[0])]} ({len(empty)} empty label(s))")
        return texts
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        return _integral(y, f"{path}: y", rows)
    raise DataError(f"{path}: y holds {_dtype_name(y)}; labels must be integers or strings")


def _integral(values: np.ndarray, where: str, rows: list[str]) -> np.ndarray:
    """Float labels that are whole numbers as int64; anything else is not a class label."""
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where} has a label that is not a number ({values[i]}) in {rows[i]}")
    fractional = values != np.round(values)
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        raise DataError(f"{where} has a non-integer label {values[i]:g} in {rows[i]}: the table dataset trains "
                        "classifiers; labels must be class names or integers")
    return values.astype(np.int64)


def _read_csv(path: Path, delimiter: str | None) -> RawTable:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save "
                        "it as UTF-8 CSV") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise DataError(f"table {path} is empty (no rows)")
    if delimiter is None:
        first = text.lstrip().split("\n", 1)[0]
        delimiter = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue  # blank lines
            rows.append(cells)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    width = len(rows[0])
    if width < 2:
        raise DataError(f"{path} line {lines[0]} has {width} column; a table needs feature columns and a label "
                        f"column (separated by {_delimiter_name(delimiter)})")
    header: list[str] | None = None
    if not all(_is_number(c) for c in rows[0][:-1]):
        header, rows, lines = [c.strip() for c in rows[0]], rows[1:], lines[1:]
        if not rows:
            raise DataError(f"table {path} has a header row but no data rows")
    columns = header or [f"column {i + 1}" for i in range(width)]
    for cells, line in zip(rows, lines):
        if len(cells) != width:
            first = "the header" if header else f"line {lines[0]}"
            raise DataError(f"{path} line {line} has {len(cells)} columns, {first} has {width}: every row needs "
                            f"the same columns ({width - 1} features and the label, last)")
    features = [cells[:-1] for cells in rows]
    try:
        x = np.array(features, dtype=np.float64)
    except ValueError:  # find the cell, to say where it is
        for cells, line in zip(features, lines):
            for col, cell in enumerate(cells):
                if not _is_number(cell):
                    shown = "is empty (a missing value)" if not cell.strip() else f"{cell.strip()!r} is not a number"
                    raise DataError(f"{path} line {line}, {_column(columns, col)}: {shown}; every feature cell must "
                                    "be a number (the last column is the label)") from None
        x = np.array([[float(c) for c in cells] for cells in features], dtype=np.float64)
    row_names = [f"line {line}" for line in lines]
    label_cells = [cells[-1].strip() for cells in rows]
    empty = [i for i, c in enumerate(label_cells) if not c]
    if empty:
        raise DataError(f"{path} {row_names[empty[0]]}: the label ({_column(columns, width - 1)}) is empty")
    y = _labels_from_cells(path, label_cells, row_names)
    note = f" (the last of its {width} columns is the label)"
    return RawTable(path, x, y, None, row_names, note, [], columns)


def _labels_from_cells(path: Path, cells: list[str], rows: list[str]) -> np.ndarray:
    """Integers (``"3"``, ``"3.0"``) when every label is one; class names otherwise."""
    if all(_is_number(c) for c in cells):
        values = np.array(cells, dtype=np.float64)
        return _integral(values, f"{path} label column", rows)
    return np.asarray(cells)


def encode_labels(raw: RawTable) -> tuple[list[str], np.ndarray, list[str]]:
    """(class names, int64 class index per row, notes) for one table."""
    notes: list[str] = []
    if raw.names is not None:
        if raw.y.dtype.kind not in "iu":
            raise DataError(f"{raw.path}: with labels (class names) given, y must hold integer indices into them, "
                            f"not {_dtype_name(raw.y)}")
        if len(set(raw.names)) != len(raw.names):
            dup = next(n for n in raw.names if raw.names.count(n) > 1)
            raise DataError(f"{raw.path}: labels has the class name {dup!r} twice")
        out = np.flatnonzero((raw.y < 0) | (raw.y >= len(raw.names)))
        if len(out):
            i = int(out[0])
            raise DataError(f"{raw.path}: y is {int(raw.y[i])} in {raw.row_names[i]}, outside the "
                            f"{len(raw.names)} class names in labels (0..{len(raw.names) - 1})")
        return list(raw.names), raw.y.astype(np.int64), notes
    values, codes = np.unique(raw.y, return_inverse=True)
    if raw.y.dtype.kind in "iu":
        classes = [str(int(v)) for v in values]
        if not np.array_equal(values, np.arange(len(values))):
            notes.append(f"{raw.path.name}: the {len(values)} integer labels ({_range(values)}) are classes 0.."
                         f"{len(values) - 1} in numeric order")
    else:
        classes = [str(v) for v in values]
    return classes, codes.astype(np.int64).reshape(-1), notes


def encode_like(val: RawTable, classes: list[str], train: RawTable) -> np.ndarray:
    """The validation table's labels as indices into the training table's classes (matched by name)."""
    names = val.names if val.names is not None else train.names
    if val.y.dtype.kind in "iu" and names is not None:  # indices into class names
        encode_labels(RawTable(val.path, val.x, val.y, names, val.row_names, val.width_note, []))  # range check
        texts = [names[int(v)] for v in val.y]
    elif val.y.dtype.kind in "iu":
        texts = [str(int(v)) for v in val.y]
    else:
        texts = [str(v) for v in val.y.tolist()]
    index = {c: i for i, c in enumerate(classes)}
    for i, label in enumerate(texts):
        if label not in index:
            raise DataError(f"validation table {val.path} has class {label!r} ({val.row_names[i]}) that the "
                            f"training table {train.path} does not have (classes: {', '.join(classes[:8])}"
                            f"{', …' if len(classes) > 8 else ''})")
    return np.asarray([index[label] for label in texts], np.int64)


def _check_finite(raw: RawTable) -> None:
    """NaN or infinite features (or values too large for float32) are named, with where the first one is."""
    x64 = raw.x
    bad = ~np.isfinite(x64)
    why = "NaN or infinite"
    if not bad.any():
        with np.errstate(over="ignore"):
            x32 = x64.astype(np.float32)
        bad = ~np.isfinite(x32)
        why = "too large for float32 (beyond ±3.4e38)"
        if not bad.any():
            raw.x = x32
            return
    r, c = (int(v) for v in np.argwhere(bad)[0])
    column = _column(raw.columns, c) if raw.columns else f"feature {c + 1} (x[:, {c}])"
    raise DataError(f"{raw.path}: {int(bad.sum())} feature value{'s are' if bad.sum() > 1 else ' is'} {why} "
                    f"(first: {raw.row_names[r]}, {column}: {x64[r, c]}); fill or drop those rows before training")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column(columns: list[str] | None, index: int) -> str:
    if not columns:
        return f"column {index + 1}"
    name = columns[index]
    return name if name.startswith("column ") else f"column {index + 1} ({name!r})"


def _range(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:4])
    return shown + (f", …, {int(values[-1])}" if len(values) > 4 else "")


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _dtype_name(array: np.ndarray) -> str:
    kinds = {"U": "strings", "S": "byte strings", "O": "Python objects", "c": "complex numbers", "M": "dates",
             "m": "time deltas", "V": "raw records"}
    return f"{kinds.get(array.dtype.kind, 'values')} (dtype {array.dtype})"


def _delimiter_name(delimiter: str) -> str:
    return {",": "commas", ";": "semicolons", "\t": "tabs"}.get(delimiter, repr(delimiter))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
