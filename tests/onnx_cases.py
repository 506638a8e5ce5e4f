"""Builders for the ONNX files the importer must handle, written into a test's tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

# ONNX IR version onnxruntime expects with each opset (helper.make_model would write the newest).
_IR_FOR_OPSET = {9: 4, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


class SmallCNN(nn.Module):
    """conv + BN + relu + pool + conv + global pool + linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.conv2(x)).mean((2, 3))
        return self.fc(x)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # non-trivial BN statistics, so a wrong BN conversion shows in parity
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 1.5)
        model.bn1.weight.uniform_(0.5, 1.5)
    return model.eval()


def export_torch(model: nn.Module, path: Path, opset: int, size: int = 16, keep_bn: bool = True, **kwargs) -> Path:
    """Export with the TorchScript exporter and a dynamic batch axis."""
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, opset_version=opset,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=not keep_bn, **kwargs,
    )
    return path


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def make_model(nodes: list, initializers: list, input_shape: list, output_shape: list, opset: int = 17,
               extra_opsets: dict[str, int] | None = None, check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = _IR_FOR_OPSET.get(opset, 8)
    if check:
        onnx.checker.check_model(model)
    return model


def weight(name: str, shape: list[int], seed: int, scale: float = 0.3) -> onnx.TensorProto:
    array = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    return numpy_helper.from_array(array, name)


def constant_node(output: str, tensor: onnx.TensorProto, name: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [output], value=tensor, name=name)


def _head(features: str, in_features: int, classes: int = 5, prefix: str = "/fc") -> tuple[list, list]:
    nodes = [
        helper.make_node("GlobalAveragePool", [features], ["gap"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="/flatten/Flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name=f"{prefix}/Gemm"),
    ]
    return nodes, [weight("fc.weight", [classes, in_features], 10), weight("fc.bias", [classes], 11)]


def constant_weights_model() -> onnx.ModelProto:
    """Conv and classifier weights stored in Constant nodes instead of initializers."""
    nodes = [
        constant_node("conv.weight", weight("cw", [8, 3, 3, 3], 1), "/conv/Constant"),
        constant_node("conv.bias", weight("cb", [8], 2), "/conv/Constant_1"),
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/act/Relu"),
        constant_node("fc.weight", weight("fw", [5, 8], 3), "/fc/Constant"),
        constant_node("fc.bias", weight("fb", [5], 4), "/fc/Constant_1"),
        helper.make_node("GlobalAveragePool", ["r"], ["gap"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="/flatten/Flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="/fc/Gemm"),
    ]
    return make_model(nodes, [], ["N", 3, 12, 12], ["N", 5])


def dequantized_weights_model() -> onnx.ModelProto:
    """Conv and classifier weights computed at runtime from int8 initializers by DequantizeLinear."""
    rng = np.random.default_rng(5)
    conv_q = numpy_helper.from_array(rng.integers(-127, 127, [8, 3, 3, 3]).astype(np.int8), "conv.weight_q")
    conv_scale = numpy_helper.from_array(np.linspace(0.002, 0.01, 8).astype(np.float32), "conv.scale")
    conv_zero = numpy_helper.from_array(np.zeros(8, np.int8), "conv.zero")
    fc_q = numpy_helper.from_array(rng.integers(-127, 127, [5, 8]).astype(np.int8), "fc.weight_q")
    fc_scale = numpy_helper.from_array(np.array(0.01, np.float32), "fc.scale")
    fc_zero = numpy_helper.from_array(np.array(3, np.int8), "fc.zero")
    nodes = [
        helper.make_node("DequantizeLinear", ["conv.weight_q", "conv.scale", "conv.zero"], ["conv.weight"], axis=0, name="/conv/DequantizeLinear"),
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/act/Relu"),
        helper.make_node("DequantizeLinear", ["fc.weight_q", "fc.scale", "fc.zero"], ["fc.weight"], name="/fc/DequantizeLinear"),
        helper.make_node("GlobalAveragePool", ["r"], ["gap"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="/flatten/Flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="/fc/Gemm"),
    ]
    inits = [conv_q, conv_scale, conv_zero, weight("conv.bias", [8], 6), fc_q, fc_scale, fc_zero, weight("fc.bias", [5], 7)]
    return make_model(nodes, inits, ["N", 3, 12, 12], ["N", 5])


def auto_pad_model() -> onnx.ModelProto:
    """SAME_UPPER / SAME_LOWER on Conv, MaxPool and AveragePool, with odd (asymmetric) total padding."""
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", name="/conv1/Conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="/act1/Relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_LOWER", name="/pool1/MaxPool"),
        helper.make_node("Conv", ["p1", "conv2.weight"], ["c2"], kernel_shape=[2, 2], auto_pad="SAME_LOWER", name="/conv2/Conv"),
        helper.make_node("AveragePool", ["c2"], ["p2"], kernel_shape=[3, 3], strides=[1, 1], auto_pad="SAME_UPPER", name="/pool2/AveragePool"),
    ]
    head_nodes, head_inits = _head("p2", 8)
    inits = [weight("conv1.weight", [8, 3, 3, 3], 1), weight("conv1.bias", [8], 2), weight("conv2.weight", [8, 8, 2, 2], 3)]
    return make_model(nodes + head_nodes, inits + head_inits, ["N", 3, 10, 10], ["N", 5])


def matmul_weights_model() -> onnx.ModelProto:
    """A layer-scale Mul, a token MatMul+Add on 3-D activations and a MatMul+Add classifier."""
    nodes = [
        helper.make_node("Conv", ["input", "stem.weight", "stem.bias"], ["c"], pads=[1, 1, 1, 1], name="/stem/Conv"),
        helper.make_node("Mul", ["c", "ls.gamma"], ["scaled"], name="/ls/Mul"),
        helper.make_node("Mul", ["scaled", "half"], ["halved"], name="/act/Mul"),
        helper.make_node("Relu", ["halved"], ["r"], name="/act/Relu"),
        helper.make_node("Reshape", ["r", "tokens_shape"], ["tokens_cf"], name="/tokens/Reshape"),
        helper.make_node("Transpose", ["tokens_cf"], ["tokens"], perm=[0, 2, 1], name="/tokens/Transpose"),
        helper.make_node("MatMul", ["tokens", "mlp.weight"], ["mm"], name="/mlp/MatMul"),
        helper.make_node("Add", ["mm", "mlp.bias"], ["mlp_out"], name="/mlp/Add"),
        helper.make_node("ReduceMean", ["mlp_out"], ["pooled"], axes=[1], keepdims=0, name="/pool/ReduceMean"),
        helper.make_node("MatMul", ["pooled", "head.weight"], ["hm"], name="/head/MatMul"),
        helper.make_node("Add", ["hm", "head.bias"], ["logits"], name="/head/Add"),
    ]
    inits = [
        weight("stem.weight", [8, 3, 3, 3], 1), weight("stem.bias", [8], 2),
        numpy_helper.from_array(np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 8, 1, 1), "ls.gamma"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([0, 8, -1], np.int64), "tokens_shape"),
        weight("mlp.weight", [8, 12], 3), weight("mlp.bias", [12], 4),
        weight("head.weight", [12, 5], 5), weight("head.bias", [5], 6),
    ]
    return make_model(nodes, inits, ["N", 3, 8, 8], ["N", 5])


def nhwc_model(normalise_first: bool) -> onnx.ModelProto:
    """TensorFlow-style input [N, H, W, 3] with a Transpose to NCHW inside.

    With ``normalise_first`` the input is normalised (Sub/Div over channels) in NHWC before the Transpose.
    """
    nodes, inits = [], []
    source = "input"
    if normalise_first:
        nodes += [
            helper.make_node("Sub", ["input", "mean"], ["centred"], name="/norm/Sub"),
            helper.make_node("Div", ["centred", "std"], ["normed"], name="/norm/Div"),
        ]
        inits += [
            numpy_helper.from_array(np.array([0.4, 0.5, 0.6], np.float32), "mean"),
            numpy_helper.from_array(np.array([0.2, 0.25, 0.3], np.float32), "std"),
        ]
        source = "normed"
    nodes += [
        helper.make_node("Transpose", [source], ["nchw"], perm=[0, 3, 1, 2], name="/to_nchw/Transpose"),
        helper.make_node("Conv", ["nchw", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/act/Relu"),
    ]
    head_nodes, head_inits = _head("r", 8)
    inits += [weight("conv.weight", [8, 3, 3, 3], 1), weight("conv.bias", [8], 2)]
    return make_model(nodes + head_nodes, inits + head_inits, ["N", 14, 12, 3], ["N", 5])


def strip_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove value_info and make every input dim symbolic, as some exporters and tools do."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.graph.value_info[:]
    for dim, label in zip(stripped.graph.input[0].type.tensor_type.shape.dim, ["N", "C", "H", "W"]):
        dim.Clear()
        dim.dim_param = label
    return stripped


def with_metadata(model: onnx.ModelProto, **values: object) -> onnx.ModelProto:
    """Metadata in the form our ONNX exporter writes: JSON strings under fixed keys."""
    helper.set_model_props(model, {key: json.dumps(value) for key, value in values.items()})
    return model


def upgrade_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    from onnx import version_converter

    upgraded = version_converter.convert_version(model, opset)
    upgraded.ir_version = _IR_FOR_OPSET[opset]
    return upgraded


def unsupported_ops_model() -> onnx.ModelProto:
    """A custom-domain op and a standard op onnx2torch lacks (Hardmax)."""
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="/conv/Conv"),
        helper.make_node("Warp", ["c"], ["w"], domain="com.acme", name="/warp/Warp"),
        helper.make_node("GlobalAveragePool", ["w"], ["gap"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="/flatten/Flatten"),
        helper.make_node("Hardmax", ["flat"], ["logits"], name="/hardmax/Hardmax"),
    ]
    return make_model(nodes, [weight("conv.weight", [4, 3, 3, 3], 1)], ["N", 3, 8, 8], ["N", 4],
                      extra_opsets={"com.acme": 1}, check=False)


def fixed_batch_model() -> onnx.ModelProto:
    """A Reshape to the constant shape [1, -1] before the classifier: batch 1 only."""
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="/conv/Conv"),
        helper.make_node("Reshape", ["c", "flat_shape"], ["flat"], name="/flatten/Reshape"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="/fc/Gemm"),
    ]
    inits = [
        weight("conv.weight", [2, 3, 3, 3], 1),
        numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"),
        weight("fc.weight", [5, 2 * 4 * 4], 2), weight("fc.bias", [5], 3),
    ]
    return make_model(nodes, inits, [1, 3, 6, 6], [1, 5])


def dynamo_style_model() -> onnx.ModelProto:
    """What torch's dynamo exporter writes at opset 20: Gelu, Reshape(allowzero=1) and one
    deduplicated zero bias shared by two MatMul+Add layers."""
    zero_bias = numpy_helper.from_array(np.zeros(8, np.float32), "shared.zero_bias")
    nodes = [
        helper.make_node("Conv", ["input", "stem.weight", "stem.bias"], ["c"], pads=[1, 1, 1, 1], name="node_stem"),
        helper.make_node("Gelu", ["c"], ["g"], name="node_gelu"),
        helper.make_node("Shape", ["g"], ["shape"], start=0, end=1, name="node_shape"),
        helper.make_node("Concat", ["shape", "tail"], ["new_shape"], axis=0, name="node_concat"),
        helper.make_node("Reshape", ["g", "new_shape"], ["tokens_cf"], allowzero=1, name="node_view"),
        helper.make_node("Transpose", ["tokens_cf"], ["tokens"], perm=[0, 2, 1], name="node_transpose"),
        helper.make_node("MatMul", ["tokens", "fc1.weight"], ["m1"], name="node_fc1"),
        helper.make_node("Add", ["m1", "shared.zero_bias"], ["a1"], name="node_fc1_bias"),
        helper.make_node("Gelu", ["a1"], ["g1"], approximate="tanh", name="node_gelu_1"),
        helper.make_node("MatMul", ["g1", "fc2.weight"], ["m2"], name="node_fc2"),
        helper.make_node("Add", ["m2", "shared.zero_bias"], ["a2"], name="node_fc2_bias"),
        helper.make_node("ReduceMean", ["a2", "axes"], ["pooled"], keepdims=0, name="node_mean"),
        helper.make_node("Gemm", ["pooled", "head.weight", "head.bias"], ["logits"], transB=1, name="node_head"),
    ]
    inits = [
        weight("stem.weight", [8, 3, 3, 3], 1), weight("stem.bias", [8], 2),
        numpy_helper.from_array(np.array([8, -1], np.int64), "tail"),
        weight("fc1.weight", [8, 8], 3), weight("fc2.weight", [8, 8], 4), zero_bias,
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        weight("head.weight", [5, 8], 5), weight("head.bias", [5], 6),
    ]
    return make_model(nodes, inits, ["batch", 3, 6, 6], ["batch", 5], opset=20)


def with_tail(model: onnx.ModelProto, tail: list[str], opset: int = 17) -> onnx.ModelProto:
    """Append ops after the graph output ``logits`` (e.g. ["Softmax", "Identity", "Cast", "Reshape"]),
    as classifier files from other frameworks end; the new output keeps the name ``logits``."""
    tailed = onnx.ModelProto()
    tailed.CopyFrom(model)
    graph = tailed.graph
    out = graph.output[0]
    classes = out.type.tensor_type.shape.dim[-1].dim_value
    for node in graph.node:
        node.output[:] = ["raw_logits" if name == "logits" else name for name in node.output]
    current = "raw_logits"
    for index, op in enumerate(tail):
        target = "logits" if index == len(tail) - 1 else f"tail{index}"
        if op in ("Softmax", "LogSoftmax"):
            node = helper.make_node(op, [current], [target], axis=-1, name=f"/tail/{op}{index}")
        elif op == "Cast":
            node = helper.make_node("Cast", [current], [target], to=TensorProto.FLOAT, name=f"/tail/Cast{index}")
        elif op == "Reshape":
            graph.initializer.append(numpy_helper.from_array(np.array([-1, classes], np.int64), f"tail_shape{index}"))
            node = helper.make_node("Reshape", [current, f"tail_shape{index}"], [target], name=f"/tail/Reshape{index}")
        else:
            node = helper.make_node(op, [current], [target], name=f"/tail/{op}{index}")
        graph.node.append(node)
        current = target
    onnx.checker.check_model(tailed)
    return tailed


def manual_softmax_model() -> onnx.ModelProto:
    """A classifier whose probabilities come from Exp / ReduceSum / Div, not a Softmax node."""
    nodes = [helper.make_node("Conv", ["input", "conv.weight"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv")]
    head_nodes, head_inits = _head("c", 4)
    head_nodes[-1].output[0] = "scores"
    nodes += head_nodes + [
        helper.make_node("Exp", ["scores"], ["e"], name="/prob/Exp"),
        helper.make_node("ReduceSum", ["e", "sum_axes"], ["total"], keepdims=1, name="/prob/ReduceSum"),
        helper.make_node("Div", ["e", "total"], ["logits"], name="/prob/Div"),
    ]
    inits = [weight("conv.weight", [4, 3, 3, 3], 1), numpy_helper.from_array(np.array([1], np.int64), "sum_axes")] + head_inits
    return make_model(nodes, inits, ["N", 3, 8, 8], ["N", 5])


def detector_model() -> onnx.ModelProto:
    """A text-detector style network: a probability map of shape (N, 1, H, W)."""
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="/backbone/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/backbone/Relu"),
        helper.make_node("Conv", ["r", "map.weight"], ["m"], name="/map/Conv"),
        helper.make_node("Sigmoid", ["m"], ["logits"], name="/map/Sigmoid"),
    ]
    inits = [weight("conv.weight", [6, 3, 3, 3], 1), weight("conv.bias", [6], 2), weight("map.weight", [1, 6, 1, 1], 3)]
    return make_model(nodes, inits, ["N", 3, 16, 16], ["N", 1, 16, 16])


def recognizer_model(classes: int = 3) -> onnx.ModelProto:
    """A text-recognizer style network: per-column scores of shape (N, T, C) from a 3×4×W input."""
    nodes = [
        helper.make_node("Conv", ["input", "col.weight", "col.bias"], ["c"], name="/col/Conv"),  # (N, C, 1, W)
        helper.make_node("Squeeze", ["c", "squeeze_axes"], ["s"], name="/seq/Squeeze"),  # (N, C, W)
        helper.make_node("Transpose", ["s"], ["logits"], perm=[0, 2, 1], name="/seq/Transpose"),  # (N, W, C)
    ]
    inits = [weight("col.weight", [classes, 3, 4, 1], 1), weight("col.bias", [classes], 2),
             numpy_helper.from_array(np.array([2], np.int64), "squeeze_axes")]
    return make_model(nodes, inits, ["N", 3, 4, 8], ["N", 8, classes])


def free_width_model() -> onnx.ModelProto:
    """An OCR-style classifier with input N×3×48×W (W free)."""
    nodes = [helper.make_node("Conv", ["input", "conv.weight"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv")]
    head_nodes, head_inits = _head("c", 4, classes=2)
    return make_model(nodes + head_nodes, [weight("conv.weight", [4, 3, 3, 3], 1)] + head_inits, ["N", 3, 48, "W"], ["N", 2])


def batchnorm_1d_model() -> onnx.ModelProto:
    """A text-recognizer block: Conv to (N, C, 1, W), a Reshape to (N, C, W) whose target shape
    is computed at run time (shape inference cannot tell its rank), then a 1-D BatchNormalization."""
    i64 = lambda values, name: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["input", "col.weight"], ["c"], name="/col/Conv"),
        helper.make_node("Shape", ["c"], ["shp"], name="/seq/Shape"),
        helper.make_node("Shape", ["shp"], ["rank"], name="/seq/Rank"),
        helper.make_node("Sub", ["rank", "two"], ["end"], name="/seq/Sub"),
        helper.make_node("Slice", ["shp", "zero", "end"], ["lead"], name="/seq/Slice"),
        helper.make_node("Concat", ["lead", "minus1"], ["newshape"], axis=0, name="/seq/Concat"),
        helper.make_node("Reshape", ["c", "newshape"], ["s"], name="/seq/Reshape"),
        helper.make_node("BatchNormalization", ["s", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"], name="/seq/bn/BatchNormalization"),
        helper.make_node("Relu", ["b"], ["r"], name="/seq/Relu"),
        helper.make_node("Transpose", ["r"], ["logits"], perm=[0, 2, 1], name="/seq/Transpose"),
    ]
    variance = (np.random.default_rng(3).random(6) + 0.5).astype(np.float32)
    inits = [weight("col.weight", [6, 3, 4, 1], 1), i64([2], "two"), i64([0], "zero"), i64([-1], "minus1"),
             weight("bn.scale", [6], 4), weight("bn.bias", [6], 5), weight("bn.mean", [6], 6),
             numpy_helper.from_array(variance, "bn.var")]
    return make_model(nodes, inits, ["N", 3, 4, 8], ["N", 8, 6])


def cast_tail_classifier_model() -> onnx.ModelProto:
    """The tf2onnx classifier tail ``MatMul → Cast → Add → Cast → Softmax``."""
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["gap"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="/flatten/Flatten"),
        helper.make_node("MatMul", ["flat", "dense.kernel"], ["mm"], name="/dense/MatMul"),
        helper.make_node("Cast", ["mm"], ["mm_f"], to=TensorProto.FLOAT, name="/dense/Cast"),
        helper.make_node("Add", ["mm_f", "dense.bias"], ["scores"], name="/dense/Add"),
        helper.make_node("Cast", ["scores"], ["scores_f"], to=TensorProto.FLOAT, name="/dense/Cast_1"),
        helper.make_node("Softmax", ["scores_f"], ["logits"], axis=-1, name="/predictions/Softmax"),
    ]
    inits = [weight("conv.weight", [6, 3, 3, 3], 1), weight("dense.kernel", [6, 5], 2), weight("dense.bias", [5], 3)]
    return make_model(nodes, inits, ["N", 3, 8, 8], ["N", 5])


def paddle_style_classifier_model(classes: int = 2) -> onnx.ModelProto:
    """What Paddle2ONNX writes for a MobileNetV3-style text-direction classifier: every weight in a
    Constant node, input N×3×48×W (N and W free), Conv + BatchNormalization + HardSwish, a
    squeeze-excite block (HardSigmoid, Mul), and a flatten whose target shape is computed at run
    time (Shape → Gather → Unsqueeze → Concat → Reshape) before a MatMul + Add classifier and Softmax."""
    i64 = lambda values, name: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    positive = lambda name, n, seed: numpy_helper.from_array(  # noqa: E731
        (np.random.default_rng(seed).random(n) + 0.5).astype(np.float32), name)
    nodes = [
        constant_node("w_conv", weight("w_conv", [8, 3, 3, 3], 1), "/c0"),
        helper.make_node("Conv", ["input", "w_conv"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], name="/conv/Conv"),
        constant_node("bn_scale", positive("bn_scale", 8, 4), "/c_bn0"),
        constant_node("bn_bias", weight("bn_bias", [8], 5), "/c_bn1"),
        constant_node("bn_mean", weight("bn_mean", [8], 6), "/c_bn2"),
        constant_node("bn_var", positive("bn_var", 8, 7), "/c_bn3"),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["b"],
                         name="/bn/BatchNormalization"),
        helper.make_node("HardSwish", ["b"], ["h"], name="/act/HardSwish"),
        helper.make_node("GlobalAveragePool", ["h"], ["se_in"], name="/se/GlobalAveragePool"),
        constant_node("w_se1", weight("w_se1", [4, 8, 1, 1], 8), "/c_se0"),
        constant_node("b_se1", weight("b_se1", [4], 9), "/c_se1"),
        helper.make_node("Conv", ["se_in", "w_se1", "b_se1"], ["se1"], name="/se/conv1/Conv"),
        helper.make_node("Relu", ["se1"], ["se1r"], name="/se/Relu"),
        constant_node("w_se2", weight("w_se2", [8, 4, 1, 1], 10), "/c_se2"),
        constant_node("b_se2", weight("b_se2", [8], 11), "/c_se3"),
        helper.make_node("Conv", ["se1r", "w_se2", "b_se2"], ["se2"], name="/se/conv2/Conv"),
        helper.make_node("HardSigmoid", ["se2"], ["gate"], alpha=0.2, beta=0.5, name="/se/HardSigmoid"),
        helper.make_node("Mul", ["h", "gate"], ["excited"], name="/se/Mul"),
        helper.make_node("GlobalAveragePool", ["excited"], ["g"], name="/pool/GlobalAveragePool"),
        helper.make_node("Shape", ["g"], ["shp"], name="/flat/Shape"),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0, name="/flat/Gather"),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"], name="/flat/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0, name="/flat/Concat"),
        helper.make_node("Reshape", ["g", "newshape"], ["flat"], name="/flat/Reshape"),
        constant_node("w_fc", weight("w_fc", [8, classes], 2), "/c1"),
        constant_node("b_fc", weight("b_fc", [classes], 3), "/c2"),
        helper.make_node("MatMul", ["flat", "w_fc"], ["mm"], name="/fc/MatMul"),
        helper.make_node("Add", ["mm", "b_fc"], ["s"], name="/fc/Add"),
        helper.make_node("Softmax", ["s"], ["logits"], axis=-1, name="/out/Softmax"),
    ]
    return make_model(nodes, [i64(0, "zero"), i64([0], "zero1"), i64([-1], "minus1")], ["N", 3, 48, "W"],
                      ["N", classes])


def mlp_model() -> onnx.ModelProto:
    """The classic freezing example: input (N, 30), bias-free Linear layers 40×30, 40×40, 40×40
    with ReLU between (4,400 parameters), exported by torch.onnx.export."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(30, 40, bias=False), nn.ReLU(), nn.Linear(40, 40, bias=False), nn.ReLU(),
                        nn.Linear(40, 40, bias=False)).eval()
    import io

    buffer = io.BytesIO()
    torch.onnx.export(mlp, (torch.randn(2, 30),), buffer, dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())
