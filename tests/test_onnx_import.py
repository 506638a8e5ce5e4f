"""The built-in ONNX model source on the kinds of files users bring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from tests import onnx_cases as cases
from workbench.backbone import Backbone, LoadRequest
from workbench.errors import ModelLoadError

PARITY = 1e-4


def load(path: Path, **kwargs) -> Backbone:
    from workbench_plugins.onnx_source import OnnxSource

    return OnnxSource().load(LoadRequest(ref=str(path), **kwargs))


def assert_trains(backbone: Backbone, expected: list[str]) -> None:
    """The named parameters (and the whole classifier) are Parameters that receive a gradient."""
    module = backbone.module
    module.train()
    x = torch.randn(2, *backbone.spec.input_size)
    out = module(x)
    assert out.shape == (2, backbone.spec.num_classes)
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    params = dict(module.named_parameters())
    classifier = backbone.spec.classifier
    assert classifier is not None
    head = [f"{classifier}.{name}" for name, _ in module.get_submodule(classifier).named_parameters()]
    assert head, f"classifier {classifier!r} has no parameters"
    for name in expected + head:
        assert name in params, f"{name} is not a parameter; have {sorted(params)}"
        assert params[name].requires_grad
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, f"{name} got no gradient"
    assert backbone.report["trainable_tensors"] == len(params)
    assert backbone.report["trainable_params"] == sum(p.numel() for p in params.values())


def assert_parity(backbone: Backbone, tolerance: float = PARITY) -> None:
    parity = backbone.report["parity_max_abs_diff"]
    assert parity is not None and parity < tolerance, parity
    json.dumps(backbone.report)  # the report must be JSON-serialisable


@pytest.mark.parametrize("opset", [17, 20])
def test_small_cnn_with_batchnorm(tmp_path: Path, opset: int) -> None:
    # opset 20 is the newest the TorchScript exporter writes and what the dynamo exporter
    # (which needs onnxscript, not installed here) writes by default.
    path = cases.export_torch(cases.small_cnn(), tmp_path / "cnn.onnx", opset)
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.spec.architecture == "onnx:cnn"
    assert backbone.spec.input_size == (3, 16, 16)
    assert backbone.spec.num_classes == 5
    assert backbone.spec.classifier == "fc"
    assert backbone.report["batchnorm"] == "present: 1 BatchNormalization nodes"
    assert backbone.report["opset"] == opset
    assert backbone.report["constant_buffers"] == []
    assert any("ImageNet defaults" in n for n in backbone.notices)
    bn = backbone.module.get_submodule("bn1")
    assert isinstance(bn, torch.nn.BatchNorm2d) and not isinstance(bn.running_mean, torch.nn.Parameter)
    if opset > 17:
        assert [p["name"] for p in backbone.report["passes"] if p["name"].startswith("convert_opset")] == [f"convert_opset_{opset}_to_17"]
    assert_trains(backbone, ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight"])


def test_newest_opset(tmp_path: Path) -> None:
    model = cases.upgrade_opset(onnx.load(str(cases.export_torch(cases.small_cnn(), tmp_path / "a.onnx", 17))), 21)
    backbone = load(cases.save(model, tmp_path / "cnn21.onnx"))
    assert_parity(backbone)
    assert backbone.report["opset"] == 21
    assert "convert_opset_21_to_17" in [p["name"] for p in backbone.report["passes"]]
    assert_trains(backbone, ["conv1.weight", "conv2.weight"])


def test_dynamo_style_graph(tmp_path: Path) -> None:
    # Stand-in for a dynamo=True export (onnxscript is not installed here): opset 20 Gelu,
    # Reshape(allowzero=1) and a deduplicated bias shared by two layers.
    backbone = load(cases.save(cases.dynamo_style_model(), tmp_path / "dynamo.onnx"))
    assert_parity(backbone)
    applied = [p["name"] for p in backbone.report["passes"]]
    assert {"decompose_ops", "drop_reshape_allowzero", "convert_opset_20_to_17"} <= set(applied)
    assert backbone.spec.classifier == "node_head"
    assert_trains(backbone, ["node_stem.weight", "node_fc1.weight", "node_fc2.weight", "node_fc1_bias.bias", "node_fc2_bias.bias"])
    params = dict(backbone.module.named_parameters())
    assert params["node_fc1_bias.bias"] is not params["node_fc2_bias.bias"]  # untied copies


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["small_cnn", "test_vit"])
def test_real_default_exporter(tmp_path: Path, arch: str) -> None:
    """A file from torch's default exporter (dynamo=True, newest default opset) imports and trains."""
    import timm

    torch.manual_seed(0)
    if arch == "small_cnn":
        model, size = cases.small_cnn(), 16
    else:
        model, size = timm.create_model(arch, pretrained=False, num_classes=4), 160
    for p in model.parameters():  # the dynamo exporter drops all-zero tensors; use non-zero weights
        torch.nn.init.normal_(p, std=0.05)
    model.eval()
    path = tmp_path / f"{arch}.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), str(path),
                      input_names=["input"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert onnx.load(str(path)).opset_import[0].version >= 18
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.spec.num_classes == 4 if arch == "test_vit" else 5
    params = dict(backbone.module.named_parameters())
    total = sum(p.numel() for p in model.parameters())
    bn_affine = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    if backbone.report["batchnorm"].startswith("none"):  # the exporter folded BatchNorm into the convolutions
        assert backbone.report["trainable_params"] == total - bn_affine
    else:
        assert backbone.report["trainable_params"] == total
    head = [n for n in params if n.startswith(backbone.spec.classifier + ".")]
    assert head and all(params[n].requires_grad for n in head)
    out = backbone.module(torch.randn(2, 3, size, size))
    out.sum().backward()
    assert all(params[n].grad is not None for n in head)


@pytest.mark.slow
def test_timm_resnet18_and_new_head(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=5).eval()
    path = cases.export_torch(model, tmp_path / "resnet18.onnx", 17, size=64, keep_bn=False)
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.spec.classifier == "fc"
    assert backbone.report["batchnorm"].startswith("none in graph")
    assert backbone.report["trainable_params"] == sum(p.numel() for p in model.parameters()) - sum(
        m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ) + sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # BN folded into conv biases
    # timm zero-inits the last BN of each block, so (BN folded) a block's first conv gets no gradient yet
    assert_trains(backbone, ["conv1.weight", "layer1_0_conv2.weight", "layer4_0_downsample_0.weight"])

    resized = load(path, num_classes=3)
    assert resized.spec.num_classes == 3 and resized.spec.classifier == "fc"
    assert resized.module.get_submodule("fc").out_features == 3
    assert any("replaced classifier" in n for n in resized.notices)
    assert_trains(resized, ["conv1.weight"])


def test_weights_in_constant_nodes(tmp_path: Path) -> None:
    path = cases.save(cases.constant_weights_model(), tmp_path / "constants.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert "fold_constants" in [p["name"] for p in backbone.report["passes"]]
    assert backbone.spec.classifier == "fc"
    assert isinstance(backbone.module.get_submodule("fc"), torch.nn.Linear)
    assert_trains(backbone, ["conv.weight", "conv.bias"])


def test_weights_from_dequantize_linear(tmp_path: Path) -> None:
    path = cases.save(cases.dequantized_weights_model(), tmp_path / "int8.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.report["op_types"]["DequantizeLinear"] == 2
    assert_trains(backbone, ["conv.weight", "conv.bias"])
    assert backbone.module.get_submodule("conv").weight.dtype == torch.float32


def test_same_auto_pad(tmp_path: Path) -> None:
    path = cases.save(cases.auto_pad_model(), tmp_path / "same.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert "explicit_auto_pad" in [p["name"] for p in backbone.report["passes"]]
    assert_trains(backbone, ["conv1.weight", "conv2.weight"])


def test_matmul_add_mul_weights_become_parameters(tmp_path: Path) -> None:
    path = cases.save(cases.matmul_weights_model(), tmp_path / "matmul.onnx")
    backbone = load(path)
    assert_parity(backbone)
    # the 2-D MatMul+Add classifier became a Linear; the 3-D token MatMul keeps its own weight
    assert backbone.spec.classifier == "head"
    assert isinstance(backbone.module.get_submodule("head"), torch.nn.Linear)
    assert "matmul_add_to_gemm" in [p["name"] for p in backbone.report["passes"]]
    assert_trains(backbone, ["stem.weight", "ls.scale", "mlp.weight", "mlp_Add.bias"])
    # a scalar (0.5) stays a constant buffer, and the report says so
    assert any("scalar" in entry for entry in backbone.report["constant_buffers"])
    params = dict(backbone.module.named_parameters())
    assert all(p.numel() > 1 for p in params.values())

    resized = load(path, num_classes=2)
    assert resized.spec.num_classes == 2
    assert_trains(resized, ["mlp.weight"])


@pytest.mark.parametrize("normalise_first", [False, True])
def test_nhwc_input(tmp_path: Path, normalise_first: bool) -> None:
    path = cases.save(cases.nhwc_model(normalise_first), tmp_path / "nhwc.onnx")
    backbone = load(path)
    assert_parity(backbone)
    assert backbone.spec.input_size == (3, 14, 12)
    assert backbone.report["input_layout"] == "NHWC (adapted: the module takes NCHW)"
    assert any("NHWC" in n for n in backbone.notices)
    # the module takes NCHW: feeding NHWC-shaped data must fail
    with pytest.raises(RuntimeError):
        backbone.module(torch.randn(2, 14, 12, 3))
    assert_trains(backbone, ["conv.weight"])


def test_stripped_shapes_take_input_size(tmp_path: Path) -> None:
    exported = cases.export_torch(cases.small_cnn(), tmp_path / "a.onnx", 17)
    path = cases.save(cases.strip_shapes(onnx.load(str(exported))), tmp_path / "stripped.onnx")
    backbone = load(path, input_size=(3, 16, 16))
    assert backbone.spec.input_size == (3, 16, 16)
    assert_parity(backbone)
    assert "fix_input_size" in [p["name"] for p in backbone.report["passes"]]
    assert_trains(backbone, ["conv1.weight"])

    with_size = cases.with_metadata(cases.strip_shapes(onnx.load(str(exported))), input_size=[3, 16, 16])
    assert load(cases.save(with_size, tmp_path / "meta.onnx")).spec.input_size == (3, 16, 16)


def test_metadata_props_fill_the_spec(tmp_path: Path) -> None:
    model = onnx.load(str(cases.export_torch(cases.small_cnn(), tmp_path / "a.onnx", 17)))
    labels = ["cat", "dog", "fox", "owl", "yak"]
    cases.with_metadata(model, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], label_names=labels,
                        interpolation="bilinear", crop_pct=0.9)
    spec = load(cases.save(model, tmp_path / "meta.onnx")).spec
    assert (spec.mean, spec.std, spec.label_names) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), labels)
    assert (spec.interpolation, spec.crop_pct) == ("bilinear", 0.9)
    override = load(tmp_path / "meta.onnx", mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0)).spec
    assert (override.mean, override.std) == ((0.1, 0.2, 0.3), (1.0, 1.0, 1.0))


def test_old_ir4_opset9_with_initializers_as_inputs(tmp_path: Path) -> None:
    exported = cases.export_torch(cases.small_cnn(), tmp_path / "a.onnx", 9, keep_initializers_as_inputs=True)
    model = onnx.load(str(exported))
    model.ir_version = 4
    assert len(model.graph.input) > 1  # every weight is also listed as an input
    backbone = load(cases.save(model, tmp_path / "old.onnx"))
    assert_parity(backbone)
    assert (backbone.report["ir_version"], backbone.report["opset"]) == (4, 9)
    assert "strip_initializer_inputs" in [p["name"] for p in backbone.report["passes"]]
    assert_trains(backbone, ["conv1.weight", "bn1.weight", "conv2.weight"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"^file not found: .*nothere\.onnx"):
        load(tmp_path / "nothere.onnx")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match=r"noise\.onnx is not a valid ONNX model"):
        load(path)


def test_truncated_file(tmp_path: Path) -> None:
    data = cases.export_torch(cases.small_cnn(), tmp_path / "a.onnx", 17).read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx is not a valid ONNX model"):
        load(path)


def test_unsupported_ops_listed_in_one_error(tmp_path: Path) -> None:
    path = cases.save(cases.unsupported_ops_model(), tmp_path / "custom.onnx")
    with pytest.raises(ModelLoadError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert "com.acme::Warp (opset 1)" in message and "Hardmax (opset 17)" in message


def test_hard_coded_batch_is_explained(tmp_path: Path) -> None:
    path = cases.save(cases.fixed_batch_model(), tmp_path / "batch1.onnx")
    with pytest.raises(ModelLoadError, match=r"batch1\.onnx.*batch size 1.*dynamic"):
        load(path)


def test_rejected_pass_is_not_used() -> None:
    from workbench_plugins.onnx_import import _PassRunner

    model = cases.constant_weights_model()
    feed = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    runner = _PassRunner(model, feed, "input")

    def corrupt(m: onnx.ModelProto) -> onnx.ModelProto:
        bad = onnx.ModelProto()
        bad.CopyFrom(m)
        tensor = bad.graph.node[0].attribute[0].t
        tensor.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor) * 2, tensor.name))
        return bad

    assert runner.apply("corrupt", corrupt) is False
    assert runner.model is model
    assert runner.rejected[0]["name"] == "corrupt" and "changed the output" in runner.rejected[0]["reason"]
    assert runner.apply("noop", lambda m: None) is False and runner.applied == []


@pytest.mark.slow
def test_reexport_to_onnx_and_trace(tmp_path: Path) -> None:
    import onnxruntime as ort

    backbone = load(cases.export_torch(cases.small_cnn(), tmp_path / "cnn.onnx", 17))
    module = backbone.module.eval()
    x = torch.randn(3, *backbone.spec.input_size)
    out = tmp_path / "again.onnx"
    torch.onnx.export(module, (x[:1],), str(out), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(x).numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - expected).max() < PARITY

    traced = torch.jit.trace(module, x[:1])
    with torch.no_grad():
        assert torch.allclose(traced(x), module(x), atol=PARITY)


def test_registered_as_entry_point(tmp_path: Path) -> None:
    from workbench.sources import load_backbone

    path = cases.export_torch(cases.small_cnn(), tmp_path / "cnn.onnx", 17)
    backbone = load_backbone(LoadRequest(ref=str(path)))
    assert backbone.source == "onnx" and backbone.ref == str(path)
    assert not os.path.exists(Path.cwd() / "cnn.onnx")
