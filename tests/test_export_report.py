"""INT8/fp16/with-preprocessing ONNX exports and the report that proves each one on the validation images.

One small run trains once (resnet10t on 400 of scikit-learn's digits as an image folder, 16 px):
a task where a broken INT8 calibration really does collapse accuracy.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.export_data import float_batch
from workbench.export_pipeline import ExportOptions, export_with_report, report_data
from workbench.export_report import REPORT_NAME, Timing
from workbench.run_loading import load_run

FAST = Timing(runs=1, warmup=0)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for c in range(10):
        folder = root / "data" / str(c)
        folder.mkdir(parents=True)
        for i, j in enumerate(np.flatnonzero(digits.target == c)[:40]):
            Image.fromarray((digits.images[j] * 255 / 16).astype(np.uint8)).save(folder / f"{i}.png")
    (root / "project.toml").write_text(textwrap.dedent('''
        [model]
        source = "timm"
        name = "resnet10t"
        num_classes = 10
        input_size = [3, 16, 16]
        [data]
        path = "data"
        val_split = 0.25
        [train]
        epochs = 4
        batch_size = 32
        lr = 0.003
        optimizer = "adamw"
        num_workers = 0
        augment = false
    '''))
    assert main(["train", str(root / "project.toml"), "--out", str(root / "run")]) == 0
    return root / "run"


def _validation(run):
    """The run's validation images through the evaluation transform, computed the way training does."""
    from workbench.data import build_transform, open_images

    trained = load_run(run)
    images = open_images(trained.plan.data, trained.plan.base_dir)
    transform = build_transform(trained.spec, train=False, augment=False)
    x = torch.stack([transform(item.load().convert("RGB")) for item in images.val])
    labels = np.array([item.label for item in images.val])
    return trained, images, x, labels


def _torch_top1(module, x):
    with torch.no_grad():
        return module.eval()(x).argmax(1).numpy()


def _ort_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.slow
def test_int8_export_keeps_validation_accuracy_and_reports_real_figures(digits_run, tmp_path, capsys):
    out = tmp_path / "model.int8.onnx"
    assert main(["export", str(digits_run), "--format", "onnx", "--quantize", "int8", "--out", str(out),
                 "--timing-runs", "1"]) == 0
    text = capsys.readouterr().out
    assert "ONNX int8 (static QDQ)" in text and "export report" in text
    report = json.loads((tmp_path / REPORT_NAME).read_text())
    names = [row["name"] for row in report["rows"]]
    assert names == ["PyTorch (eager)", "ONNX fp32", "ONNX int8 (static QDQ)"]
    torch_row, fp32_row, int8_row = report["rows"]
    assert [r["written"] for r in report["rows"]] == [False, False, True]
    assert report["synthetic"] is False and report["inputs"] == 100

    trained, _images, x, labels = _validation(digits_run)
    expected = _torch_top1(trained.module, x)
    assert torch_row["top1"] == pytest.approx((expected == labels).mean())
    assert torch_row["top1"] > 0.8  # a trained model, not chance
    # The figures are the written file's, recomputed here from the file itself.
    logits = _ort_logits(out, x.numpy())
    assert int8_row["top1"] == pytest.approx((logits.argmax(1) == labels).mean())
    assert int8_row["agreement"] == pytest.approx((logits.argmax(1) == expected).mean())
    with torch.no_grad():
        reference = trained.module(x).numpy()
    assert int8_row["max_abs_logit_diff"] == pytest.approx(np.abs(logits - reference).max(), rel=1e-3)
    assert int8_row["max_abs_logit_diff"] > fp32_row["max_abs_logit_diff"]  # quantization error is real
    assert int8_row["delta_points"] >= -1.0
    assert int8_row["size_bytes"] == out.stat().st_size < fp32_row["size_bytes"] / 3
    assert int8_row["latency_ms_b1"] > 0 and int8_row["throughput_b32"] > 0
    assert int8_row["files"] == [str(out)]
    # Static QDQ with per-channel weight scales; the metadata says so.
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = {i.name: i for i in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in scales
                   and len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1]
    assert per_channel
    meta = {p.key: p.value for p in model.metadata_props}
    assert "int8 static" in json.loads(meta["precision"])
    assert json.loads(meta["label_names"]) == [str(c) for c in range(10)]
    assert "calibrated on 200 of 300 training images" in " ".join(report["notes"])


@pytest.mark.slow
def test_broken_calibration_is_caught_by_the_accuracy_gate(digits_run, tmp_path):
    trained = load_run(digits_run)
    options = ExportOptions(quantize="int8", timing=FAST)
    data = report_data(trained.plan, trained.spec, options)
    assert data.calibration_uint8 is not None
    data.calibration_uint8 = np.zeros_like(data.calibration_uint8)  # all-black calibration images
    data.calibration_float = float_batch(data.calibration_uint8, trained.spec)
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(WorkbenchError, match=r"refusing the INT8 export .*top-1 \d+\.\d+% on 100 validation images "
                                             r"vs \d+\.\d+% for PyTorch.*Nothing written"):
        export_with_report(trained.module, trained.spec, "onnx", out, None, options, data)
    assert list((tmp_path / "out").iterdir()) == []  # no file, no report, no scratch folder
    accepted = ExportOptions(quantize="int8", timing=FAST, accept_accuracy_drop=True)
    outcome = export_with_report(trained.module, trained.spec, "onnx", out, None, accepted, data)
    row = outcome.report.rows[-1]
    assert row.delta_points is not None and row.delta_points < -10
    assert out.is_file() and json.loads(outcome.report_path.read_text())["accepted_accuracy_drop"] is True


@pytest.mark.slow
def test_with_preprocessing_takes_raw_uint8_images(digits_run, tmp_path):
    out = tmp_path / "pre.onnx"
    assert main(["export", str(digits_run), "--format", "onnx", "--with-preprocessing", "--out", str(out),
                 "--timing-runs", "1"]) == 0
    trained, images, x, labels = _validation(digits_run)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    assert first.type == "tensor(uint8)" and first.shape[1:] == [16, 16, 3]
    # What an application has: the image at the model's size as uint8 H×W×C, nothing else done to it.
    raw = np.stack([np.asarray(item.load().convert("RGB").resize((16, 16), Image.Resampling.BICUBIC))
                    for item in images.val])
    from workbench.data import build_transform

    steps = build_transform(trained.spec, train=False, augment=False).transforms
    resized = np.stack([np.asarray(steps[1](steps[0](item.load().convert("RGB")))) for item in images.val])
    logits = session.run(None, {first.name: resized})[0]
    with torch.no_grad():
        reference = trained.module(x).numpy()
    assert (logits.argmax(1) == reference.argmax(1)).all()
    assert np.abs(logits - reference).max() < 1e-4
    assert raw.dtype == np.uint8  # a caller's plain resize gives a valid input too
    session.run(None, {first.name: raw})
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    inside = json.loads(meta["preprocessing"])
    assert "divide by 255" in inside["inside"] and any("resize" in s for s in inside["not_inside"])
    row = json.loads((tmp_path / REPORT_NAME).read_text())["rows"][-1]
    assert row["input"].startswith("uint8") and row["agreement"] == 1.0
    assert row["top1"] == pytest.approx((reference.argmax(1) == labels).mean())


@pytest.mark.slow
def test_fp16_export_and_out_of_range_tensors(digits_run, tmp_path):
    out = tmp_path / "half.onnx"
    assert main(["export", str(digits_run), "--format", "onnx", "--precision", "fp16", "--keep-io-float32",
                 "--out", str(out), "--timing-runs", "1"]) == 0
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    row = json.loads((tmp_path / REPORT_NAME).read_text())["rows"][-1]
    assert row["name"] == "ONNX fp16 (float32 io)" and 0 < row["max_abs_logit_diff"] < 0.1

    trained = load_run(digits_run)
    with torch.no_grad():
        trained.module.fc.bias[3] = 1e6  # beyond fp16's 65504
    options = ExportOptions(precision="fp16", timing=FAST)
    data = report_data(trained.plan, trained.spec, options)
    target = tmp_path / "bad" / "half.onnx"
    with pytest.raises(WorkbenchError, match=r"refusing fp16: .*weight fc\.bias .*activation"):
        export_with_report(trained.module, trained.spec, "onnx", target, None, options, data)
    assert list((tmp_path / "bad").iterdir()) == []


@pytest.mark.slow
def test_skipped_operator_is_named_and_the_rest_quantized(tmp_path):
    from workbench.export_data import ReportData
    from workbench.spec import ModelSpec

    module = _tiny_gelu_net()
    spec = ModelSpec("tiny-gelu", 4, (3, 12, 12))
    x = np.random.default_rng(0).standard_normal((40, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        labels = module(torch.from_numpy(x)).argmax(1).numpy()
    data = ReportData("40 test inputs", x, labels, calibration_float=x, calibration_source="the test inputs")
    options = ExportOptions(quantize="int8", timing=FAST, accept_accuracy_drop=True)
    outcome = export_with_report(module, spec, "onnx", tmp_path / "m.onnx", None, options, data)
    notes = " ".join(outcome.report.notes)
    assert "ops that stayed float" in notes and "Erf" in notes and "Conv" not in notes.split("stayed float")[1]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert "Erf" in ops and ops.count("DequantizeLinear") >= 4


def _tiny_gelu_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GELU(approximate="none"), torch.nn.Conv2d(8, 8, 3),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_with_a_count_that_is_no_multiple_of_the_batch(tmp_path, method):
    from workbench.export_data import ReportData
    from workbench.spec import ModelSpec

    module = _tiny_gelu_net()
    x = np.random.default_rng(1).standard_normal((37, 3, 12, 12)).astype(np.float32)  # 37: prime
    with torch.no_grad():
        labels = module(torch.from_numpy(x)).argmax(1).numpy()
    data = ReportData("37 test inputs", x, labels, calibration_float=x, calibration_source="37 inputs")
    options = ExportOptions(quantize="int8", calibration_method=method, timing=FAST, accept_accuracy_drop=True)
    outcome = export_with_report(module, ModelSpec("tiny", 4, (3, 12, 12)), "onnx", tmp_path / "m.onnx", None,
                                 options, data)
    assert f"{method} ranges" in " ".join(outcome.report.notes)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert method in json.loads(meta["precision"])


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--format", "torchscript", "--quantize", "int8"], "--quantize: for --format onnx only, not torchscript"),
    (["--format", "onnx", "--quantize", "int8", "--precision", "fp16"], "choose one"),
    (["--format", "onnx", "--calibration-images", "5"], "applies to --quantize int8"),
    (["--format", "onnx", "--quantize", "int8", "--calibration-images", "301"],
     "--calibration-images 301 is more than the 300 training images"),
    (["--format", "onnx", "--keep-io-float32"], "applies to --precision fp16 only"),
    (["--format", "onnx", "--quantize", "int8-dynamic", "--calibration-method", "entropy"],
     "--calibration-method applies to --quantize int8 (static) only"),
    (["--format", "onnx", "--max-accuracy-drop", "-1"], "must be 0-100 points"),
])
def test_bad_export_options_are_one_error_and_write_nothing(digits_run, tmp_path, capsys, args, message):
    out = tmp_path / "x" / "m.onnx"
    assert main(["export", str(digits_run), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err
    assert not (tmp_path / "x").exists() or list((tmp_path / "x").iterdir()) == []


@pytest.mark.slow
def test_unwritable_target_and_foreign_report_are_refused(digits_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["export", str(digits_run), "--format", "onnx", "--out", str(blocker / "m.onnx")]) == 2
    assert "cannot write" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    foreign = tmp_path / "mine" / REPORT_NAME
    foreign.write_text('{"someone": "else"}')
    assert main(["export", str(digits_run), "--format", "onnx", "--out", str(tmp_path / "mine" / "m.onnx")]) == 2
    assert "is not an export report written by the workbench" in capsys.readouterr().err
    assert foreign.read_text() == '{"someone": "else"}' and not (tmp_path / "mine" / "m.onnx").exists()


@pytest.mark.slow
def test_no_validation_set_gives_agreement_only_and_int8_is_refused(tmp_path):
    import timm

    from workbench.spec import ModelSpec

    module = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    spec = ModelSpec("onnx:imported", 3, (3, 16, 16))
    data = report_data(None, spec, ExportOptions(), "an ONNX file loaded alone")
    assert data.synthetic and "64 synthetic inputs" in data.description
    outcome = export_with_report(module, spec, "onnx", tmp_path / "m.onnx", None, ExportOptions(timing=FAST), data)
    row = outcome.report.rows[-1]
    assert row.top1 is None and row.delta_points is None and row.agreement == 1.0
    assert json.loads(outcome.report_path.read_text())["synthetic"] is True
    with pytest.raises(WorkbenchError, match="needs the run's training images to calibrate.*an ONNX file loaded alone"):
        report_data(None, spec, ExportOptions(quantize="int8"), "an ONNX file loaded alone")


def test_with_preprocessing_is_refused_for_a_feature_table_model():
    from workbench.spec import ModelSpec

    spec = ModelSpec("mlp", 3, (30,), mean=(0.0,) * 30, std=(1.0,) * 30)
    with pytest.raises(WorkbenchError, match="is for image models: mlp takes feature vectors"):
        ExportOptions(with_preprocessing=True).check("onnx", spec)
