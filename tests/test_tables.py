"""The table dataset: feature rows from real .npz and .csv files, its split, its errors and its preprocessing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import onnx_cases as cases
from workbench.cli import main
from workbench.data import open_data, open_images, stratified_split, thumbnails
from workbench.errors import DataError, WorkbenchError
from workbench.plan import DataConfig
from workbench.spec import ModelSpec
from workbench.tables import LabelledTable


def blobs(classes: int = 3, per_class: int = 10, width: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable clusters: one Gaussian blob per class."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, width)) * 3
    y = np.repeat(np.arange(classes), per_class)
    return (centres[y] + rng.standard_normal((len(y), width)) * 0.3).astype(np.float32), y


def write_csv(path: Path, x: np.ndarray, labels: list, header: bool = True, sep: str = ",") -> Path:
    lines = [sep.join([f"f{i}" for i in range(x.shape[1])] + ["label"])] if header else []
    lines += [sep.join([repr(float(v)) for v in row] + [str(label)]) for row, label in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def table(path: Path, **config) -> LabelledTable:
    opened = open_images(DataConfig(dataset="table", path=str(path), **config))
    assert isinstance(opened, LabelledTable)
    return opened


def feature_spec(width: int, classes: int = 3) -> ModelSpec:
    return ModelSpec("onnx:mlp", classes, (width,), (0.0,) * width, (1.0,) * width)  # type: ignore[arg-type]


def test_npz_opens_with_the_image_datasets_split(tmp_path: Path) -> None:
    x, y = blobs()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    opened = table(tmp_path / "t.npz", val_split=0.2, seed=3)
    assert opened.classes == ["0", "1", "2"] and opened.width == 4
    assert opened.counts() == {"0": (8, 2), "1": (8, 2), "2": (8, 2)}
    train_idx, val_idx = stratified_split(y.tolist(), 3, 0.2, 3, ["0", "1", "2"])
    np.testing.assert_array_equal(opened.x_train, x[train_idx])
    np.testing.assert_array_equal(opened.x_val, x[val_idx])
    np.testing.assert_array_equal(opened.y_val, y[val_idx])
    assert opened.x_train.dtype == np.float32 and opened.y_train.dtype == np.int64
    assert thumbnails(opened, 2, 32) == []  # the Data tab shows counts, no pictures


def test_npz_class_names_and_string_labels(tmp_path: Path) -> None:
    x, y = blobs()
    np.savez(tmp_path / "named.npz", x=x, y=y, labels=np.array(["low", "mid", "high"]))
    assert table(tmp_path / "named.npz").classes == ["low", "mid", "high"]  # the given order, y indexes into it
    np.savez(tmp_path / "strings.npz", x=x, y=np.array(["b", "a", "c"])[y])
    opened = table(tmp_path / "strings.npz", val_split=0.0)
    assert opened.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(opened.y_train, np.array([1, 0, 2])[y])


def test_csv_with_and_without_header_string_or_integer_labels(tmp_path: Path) -> None:
    x, y = blobs()
    with_header = table(write_csv(tmp_path / "a.csv", x, [["cat", "dog", "owl"][v] for v in y]), val_split=0.0)
    assert with_header.classes == ["cat", "dog", "owl"] and with_header.width == 4
    np.testing.assert_allclose(with_header.x_train, x)
    # integers sort as numbers (2 before 10), not as text; 1-based labels are said to become 0..K-1
    no_header = table(write_csv(tmp_path / "b.csv", x, [[1, 2, 10][v] for v in y], header=False), val_split=0.0)
    assert no_header.classes == ["1", "2", "10"] and no_header.width == 4
    np.testing.assert_array_equal(no_header.y_train, y)
    assert any("integer labels (1, 2, 10) are classes 0..2" in p for p in no_header.problems)
    semicolons = table(write_csv(tmp_path / "c.csv", x, y.tolist(), sep=";"), val_split=0.0)
    assert semicolons.classes == ["0", "1", "2"] and not semicolons.problems
    tsv = tmp_path / "d.tsv"
    tsv.write_text(write_csv(tmp_path / "d.csv", x, y.tolist(), sep="\t").read_text())
    assert table(tsv).width == 4


def test_explicit_validation_table(tmp_path: Path) -> None:
    x, y = blobs(seed=1)
    xv, yv = blobs(per_class=2, seed=1)
    write_csv(tmp_path / "train.csv", x, [f"c{v}" for v in y])
    write_csv(tmp_path / "val.csv", xv, [f"c{v}" for v in yv], header=False)
    opened = table(tmp_path / "train.csv", val_path=str(tmp_path / "val.csv"))
    assert opened.counts() == {"c0": (10, 2), "c1": (10, 2), "c2": (10, 2)}
    assert "(validation:" in opened.source
    write_csv(tmp_path / "odd.csv", xv, [f"c{v}" for v in yv[:-1]] + ["c9"])
    with pytest.raises(DataError, match=r"class 'c9' \(line 7\) that the training table .* does not have"):
        table(tmp_path / "train.csv", val_path=str(tmp_path / "odd.csv"))
    write_csv(tmp_path / "narrow.csv", xv[:, :3], [f"c{v}" for v in yv])
    with pytest.raises(DataError, match="has 3 feature columns.*has 4"):
        table(tmp_path / "train.csv", val_path=str(tmp_path / "narrow.csv"))


def _write_bad(path: Path, case: str) -> Path:
    x, y = blobs()
    if case == "npz_keys":
        np.savez(path, X=x, Y=y)
    elif case == "npz_x_1d":
        np.savez(path, x=x[:, 0], y=y)
    elif case == "npz_x_images":
        np.savez(path, x=np.zeros((30, 3, 8, 8), np.float32), y=y)
    elif case == "npz_x_strings":
        np.savez(path, x=x.astype(str), y=y)
    elif case == "npz_lengths":
        np.savez(path, x=x, y=y[:-2])
    elif case == "npz_object":
        np.savez(path, x=x, y=np.array([None, "a"] * 15, dtype=object))
    elif case == "npz_nan":
        x[7, 2] = np.nan
        np.savez(path, x=x, y=y)
    elif case == "npz_labels_range":
        np.savez(path, x=x, y=y, labels=np.array(["a", "b"]))
    elif case == "npz_damaged":
        np.savez(path, x=x, y=y)
        path.write_bytes(path.read_bytes()[:100])
    elif case == "text_as_npz":
        path.write_text("1,2,a\n")
    elif case == "npz_no_rows":
        np.savez(path, x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "blank_csv":
        path.write_text("\n \n")
    elif case == "header_only":
        path.write_text("a,b,label\n")
    elif case == "ragged":
        path.write_text("a,b,label\n1,2,x\n3,4,y\n5,x\n")
    elif case == "text_cell":
        path.write_text("a,b,label\n1,2,x\n3,abc,y\n")
    elif case == "empty_cell":
        path.write_text("1,2,x\n3,,y\n")
    elif case == "inf_cell":
        path.write_text("a,b,label\n1,2,x\n3,4,y\n5,inf,x\n1e39,1,y\n")
    elif case == "float_label":
        path.write_text("1,2,0\n3,4,0.5\n")
    elif case == "one_column":
        path.write_text("1\n2\n")
    elif case == "single_class":
        path.write_text("a,b,label\n1,2,yes\n3,4,yes\n5,6,yes\n")
    return path


@pytest.mark.parametrize("case, suffix, message", [
    ("npz_keys", ".npz", r"has arrays X, Y; expected x \(features.*lower-case x and y"),
    ("npz_x_1d", ".npz", r"x has shape \(30,\); expected rows × features .* shape \(30, 1\)"),
    ("npz_x_images", ".npz", r"x has shape \(30, 3, 8, 8\); a table's features must be 2-D"),
    ("npz_x_strings", ".npz", "x holds strings .* not numbers"),
    ("npz_lengths", ".npz", "x has 30 rows but y has 28 labels"),
    ("npz_object", ".npz", "y is an object array"),
    ("npz_nan", ".npz", r"1 feature value is NaN or infinite \(first: row 7, feature 3 \(x\[:, 2\]\): nan\)"),
    ("npz_labels_range", ".npz", r"y is 2 in row 20, outside the 2 class names in labels \(0..1\)"),
    ("npz_damaged", ".npz", "not a .npz archive .* or it is truncated"),
    ("text_as_npz", ".npz", "not a .npz archive"),
    ("npz_no_rows", ".npz", "has no rows"),
    ("empty", ".csv", r"is empty \(0 bytes\)"),
    ("empty", ".npz", r"is empty \(0 bytes\)"),
    ("blank_csv", ".csv", r"is empty \(no rows\)"),
    ("header_only", ".csv", "has a header row but no data rows"),
    ("ragged", ".csv", r"line 4 has 2 columns, the header has 3: every row needs the same columns \(2 features"),
    ("text_cell", ".csv", r"line 3, column 2 \('b'\): 'abc' is not a number"),
    ("empty_cell", ".csv", r"line 2, column 2: is empty \(a missing value\)"),
    ("inf_cell", ".csv", r"1 feature value is NaN or infinite \(first: line 4, column 2 \('b'\): inf\)"),
    ("float_label", ".csv", "non-integer label 0.5 in line 2"),
    ("one_column", ".csv", "line 1 has 1 column; a table needs feature columns and a label column"),
    ("single_class", ".csv", r"need at least 2 classes to train a classifier, found 1 \(yes\)"),
])
def test_bad_tables_get_one_specific_error(tmp_path: Path, case: str, suffix: str, message: str) -> None:
    path = _write_bad(tmp_path / f"bad{suffix}", case)
    with pytest.raises(WorkbenchError, match=message) as raised:
        table(path)
    assert "Traceback" not in str(raised.value) and "\n" not in str(raised.value)


def test_values_too_large_for_float32_are_refused(tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_text("a,b,label\n1,2,x\n1e39,1,y\n")
    with pytest.raises(DataError, match=r"too large for float32 .*line 3, column 1 \('a'\): 1e\+39"):
        table(tmp_path / "big.csv")


def test_missing_file_folder_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="table file .*nope.npz does not exist"):
        table(tmp_path / "nope.npz")
    with pytest.raises(DataError, match='is a folder; .* dataset = "folder"'):
        table(tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match=r"is not a .npz or .csv file \(suffix .json\)"):
        table(tmp_path / "x.json")
    with pytest.raises(DataError, match=r"no table file set: set \[data\] path"):
        open_images(DataConfig(dataset="table"))


def test_width_must_match_the_model_input(tmp_path: Path) -> None:
    x, y = blobs(width=29)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    config = DataConfig(dataset="table", path=str(tmp_path / "t.npz"))
    with pytest.raises(DataError, match=r"expects \(N, 30\) feature vectors but .*t.npz has 29 feature columns"):
        open_data(config, None, feature_spec(30), augment=False)
    write_csv(tmp_path / "t.csv", x, y.tolist())
    with pytest.raises(DataError, match=r"\(N, 30\) .* has 29 feature columns \(the last of its 30 columns is the label\)"):
        open_data(DataConfig(dataset="table", path=str(tmp_path / "t.csv")), None, feature_spec(30), augment=False)
    image_spec = ModelSpec("resnet18", 3)
    with pytest.raises(DataError, match=r"29 features per row\) but resnet18 takes images \(3×224×224\)"):
        open_data(config, None, image_spec, augment=False)


def test_rows_go_in_as_they_are_unless_standardized(tmp_path: Path) -> None:
    x, y = blobs(per_class=20, width=5)
    x[:, 1] = x[:, 1] * 1000 + 50  # a feature on another scale
    x[:, 4] = 7.0  # a constant feature
    np.savez(tmp_path / "t.npz", x=x, y=y)
    config = DataConfig(dataset="table", path=str(tmp_path / "t.npz"), val_split=0.25)
    opened = table(tmp_path / "t.npz", val_split=0.25)

    spec = feature_spec(5)
    raw = open_data(config, None, spec, augment=True)
    assert raw.augments is False and raw.unit == "rows"
    np.testing.assert_array_equal(raw.train.x.numpy(), opened.x_train)  # unchanged
    assert spec.mean == (0.0,) * 5
    assert any("feature scales differ widely (feature 2 (of 5) has std" in p and "standardize = true" in p
               for p in raw.problems), raw.problems
    assert "5 features fed as they are (no standardization)" in raw.summary() and "15 val rows" in raw.summary()

    standardized = open_data(DataConfig(dataset="table", path=str(tmp_path / "t.npz"), val_split=0.25,
                                        standardize=True), None, spec, augment=False)
    train64 = opened.x_train.astype(np.float64)
    mean, std = train64.mean(0), train64.std(0)
    std[4] = 1.0
    # the training rows' statistics, not the validation rows': the model's preprocessing from now on
    np.testing.assert_allclose(spec.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(spec.std, std, rtol=1e-12)
    got = standardized.train.x.numpy()
    np.testing.assert_allclose(got[:, :4].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(got[:, :4].std(0), 1, atol=1e-4)
    np.testing.assert_allclose(standardized.val.x.numpy(), (opened.x_val - mean) / std, rtol=1e-5, atol=1e-5)
    assert any("feature 5 (of 5) is constant in the training rows; centred, not scaled" in p
               for p in standardized.problems)
    assert standardized.fingerprint != raw.fingerprint
    # the model's own per-feature mean/std (e.g. from an exported file's metadata) apply without standardize
    again = open_data(config, None, spec, augment=False)
    np.testing.assert_allclose(again.train.x.numpy(), got, rtol=1e-6)
    assert "normalised with the model's own mean/std" in again.summary()


def test_standardize_is_for_tables_only(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="standardize = true applies to feature tables"):
        open_images(DataConfig(dataset="digits", standardize=True))


def test_table_dataset_batches_as_float_rows(tmp_path: Path) -> None:
    x, y = blobs()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    bundle = open_data(DataConfig(dataset="table", path=str(tmp_path / "t.npz")), None, feature_spec(4), False)
    loader = torch.utils.data.DataLoader(bundle.train, batch_size=5)
    features, labels = next(iter(loader))
    assert features.shape == (5, 4) and features.dtype == torch.float32 and labels.dtype == torch.int64


def _project(tmp_path: Path, data: str, extra: str = "") -> Path:
    project = tmp_path / "project.toml"
    project.write_text(textwrap.dedent(f'''
        [model]
        source = "onnx"
        name = "mlp.onnx"

        [data]
        dataset = "table"
        path = "{data}"
        {extra}

        [train]
        epochs = 1
        batch_size = 16
        num_workers = 0
    '''))
    return project


@pytest.mark.slow
def test_workbench_train_names_both_widths_and_image_data_is_refused_for_a_feature_model(tmp_path: Path,
                                                                                          capsys) -> None:
    cases.save(cases.mlp_model(), tmp_path / "mlp.onnx")
    x, y = blobs(classes=40, per_class=2, width=29)
    np.savez(tmp_path / "narrow.npz", x=x, y=y)
    assert main(["train", str(_project(tmp_path, "narrow.npz", "val_split = 0.0")), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "(N, 30)" in err and "29 feature columns" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "model.safetensors").exists()

    from tests.test_cli_train import write_image_folder

    write_image_folder(tmp_path / "images", per_class=2, size=8)
    project = _project(tmp_path, "images")
    project.write_text(project.read_text().replace('dataset = "table"', 'dataset = "folder"'))
    assert main(["train", str(project), "--out", str(tmp_path / "r2"), "--adapt-head"]) == 2
    err = capsys.readouterr().err
    assert "takes feature vectors (N, 30), not images" in err and 'dataset = "table"' in err


@pytest.mark.slow
def test_standardization_travels_into_the_run_and_its_exports(tmp_path: Path, capsys) -> None:
    cases.save(cases.mlp_model(), tmp_path / "mlp.onnx")
    x, y = blobs(classes=40, per_class=3, width=30)
    x[:, 0] = x[:, 0] * 500 + 1000
    np.savez(tmp_path / "t.npz", x=x, y=y, labels=np.array([f"k{i}" for i in range(40)]))
    project = _project(tmp_path, "t.npz", "val_split = 0.0\nstandardize = true")
    assert main(["train", str(project), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "standardized with the training rows' mean/std" in out
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    np.testing.assert_allclose(spec["mean"], x.astype(np.float64).mean(0), rtol=1e-6)
    assert spec["label_names"][:2] == ["k0", "k1"]
    assert main(["export", str(tmp_path / "run"), "--format", "safetensors", "--out", str(tmp_path / "st")]) == 0
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    np.testing.assert_allclose(config["pretrained_cfg"]["mean"], spec["mean"])
    np.testing.assert_allclose(config["pretrained_cfg"]["std"], spec["std"])
    assert config["pretrained_cfg"]["input_size"] == [30]
    # the ONNX export carries them too, and importing it again gives them back as the model's preprocessing
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    from tests.test_onnx_import import load

    again = load(tmp_path / "m.onnx").spec
    np.testing.assert_allclose(again.mean, spec["mean"])
    np.testing.assert_allclose(again.std, spec["std"])
    assert again.label_names == spec["label_names"]
    # resuming re-derives the same statistics: the data fingerprint matches, nothing to allow
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 2  # images only so far: said, not a crash
    err = capsys.readouterr().err
    assert "is a feature table: evaluation works on images only so far" in err and "Traceback" not in err


def test_a_table_given_to_the_image_folder_dataset_points_to_the_table_dataset(tmp_path: Path) -> None:
    x, y = blobs()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    with pytest.raises(WorkbenchError, match='is not a folder; for a feature table set \\[data\\] dataset = "table"'):
        open_images(DataConfig(path=str(tmp_path / "t.npz")))
