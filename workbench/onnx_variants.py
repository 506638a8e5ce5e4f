"""Smaller/faster and self-contained variants of an exported fp32 ONNX file.

INT8 (static QDQ with per-channel weights, calibrated on real images; or dynamic), fp16, and a
uint8 NHWC front end that does the model's preprocessing inside the graph. Each function reads one
file and writes another; the caller stages both in a scratch folder. Metadata keys that say what
a file is (``precision``, ``preprocessing``) are written here, beside the exporter's own keys.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np

FP16_MAX = 65504.0
CALIBRATION_BATCH = 16
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_QDQ = ("QuantizeLinear", "DequantizeLinear")
# Ops that move or reshape values without arithmetic: never worth naming as "stayed float".
_NO_ARITHMETIC = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Flatten", "Constant",
                  "Identity", "Transpose", "Cast", "Slice", "ConstantOfShape", "Expand", "Range"}


def quantize_int8_static(src: Path, dst: Path, calibration: "np.ndarray", method: str = "minmax") -> dict[str, int]:
    """Static QDQ INT8 (per-channel weights; activation ranges by ``method``); returns {op type: count} that stayed float.

    ``minmax`` takes each activation's full calibration range; ``entropy`` and ``percentile`` clip rare
    outliers (onnxruntime's histogram calibrators), which often keeps more accuracy at 8 bits.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if len(calibration) == 0:
        raise WorkbenchError("INT8 calibration needs at least 1 image")
    name = _input_name(src)

    # Trap: the histogram calibrators (entropy, percentile) stack per-batch outputs and fail on a short last
    # batch, so every batch has the same size: the largest divisor of the count up to CALIBRATION_BATCH.
    size = max(d for d in range(1, CALIBRATION_BATCH + 1) if len(calibration) % d == 0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calibration[i:i + size] for i in range(0, len(calibration), size)])

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    prepared = _pre_processed(src)
    # Trap: uint8 activations, not int8. With int8 activations onnxruntime's CPU provider fuses only some
    # DQ→Conv→Q groups into QLinearConv (9 of resnet18's 20) and runs the rest as float Conv behind
    # DequantizeLinear: 2× slower than fp32. With uint8 (U8S8, its VNNI path) all 20 fuse
    # (benchmarks/RESULTS.md §8).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Trap: the calibrators print progress to stdout; the CLI's output is ours.
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(prepared), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method={"minmax": CalibrationMethod.MinMax,
                                                  "entropy": CalibrationMethod.Entropy,
                                                  "percentile": CalibrationMethod.Percentile}[method],
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                               "CalibMovingAverage": False})
    except WorkbenchError:
        raise
    except Exception as exc:
        raise WorkbenchError(f"onnxruntime could not quantize the model: {_one_line(exc)}") from None
    _copy_metadata(src, dst, {"precision": f"int8 static (QDQ, uint8 activations, per-channel int8 weights, {method} calibration)",
                              "calibration_images": len(calibration)})
    return stayed_float(dst)


def quantize_int8_dynamic(src: Path, dst: Path) -> dict[str, int]:
    """Dynamic INT8 (weights int8, activations quantized at run time); returns the ops that stayed float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _pre_processed(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Conv stays float: ConvInteger has only a uint8 kernel on onnxruntime's CPU provider.
            quantize_dynamic(str(prepared), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"])
    except Exception as exc:
        raise WorkbenchError(f"onnxruntime could not quantize the model: {_one_line(exc)}") from None
    _copy_metadata(src, dst, {"precision": "int8 dynamic (int8 weights of MatMul/Gemm; activations at run time)"})
    return stayed_float(dst, dynamic=True)


def stayed_float(path: Path, dynamic: bool = False) -> dict[str, int]:
    """Op types (with counts) that compute in float in a quantized graph: no dequantized input, no integer kernel."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dequantized = {o for n in model.graph.node if n.op_type in ("DequantizeLinear", "DynamicQuantizeLinear")
                   for o in n.output}
    integer_ops = {"MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul"}
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in _QDQ or node.op_type in _NO_ARITHMETIC or node.op_type in integer_ops:
            continue
        if node.op_type == "DynamicQuantizeLinear" or (not dynamic and any(i in dequantized for i in node.input)):
            continue
        counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def check_fp16_range(src: Path, sample: "np.ndarray") -> None:
    """Refuse fp16 when a weight, or an activation on ``sample``, is beyond ±65504 (named)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(src))
    bad = []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        peak = float(np.max(np.abs(values[np.isfinite(values)]))) if values.size else 0.0
        if peak > FP16_MAX:
            bad.append(f"weight {init.name} (|max| {peak:.3g})")
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {o.name for o in model.graph.output}
    for info in inferred.graph.value_info:
        if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and info.name not in known:
            model.graph.output.append(info)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor stays visible
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    peaks: dict[str, float] = {}
    for start in range(0, len(sample), 32):
        for tensor_name, value in zip(names, session.run(names, {session.get_inputs()[0].name: sample[start:start + 32]})):
            finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
            if finite.size:
                peaks[tensor_name] = max(peaks.get(tensor_name, 0.0), float(np.max(np.abs(finite))))
    bad += [f"activation {name} (|max| {peak:.3g} on the validation inputs)"
            for name, peak in peaks.items() if peak > FP16_MAX]
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise WorkbenchError(f"refusing fp16: {len(bad)} tensor(s) exceed the fp16 range ±{FP16_MAX:g} and would "
                             f"become inf: {shown}. Export fp32 (or INT8) instead")


def convert_fp16(src: Path, dst: Path, keep_io_float32: bool) -> None:
    """fp16 weights and compute (onnxruntime's float16 converter, the onnxconverter-common one)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = convert_float_to_float16(model, keep_io_types=keep_io_float32)
    except Exception as exc:
        raise WorkbenchError(f"fp16 conversion failed: {_one_line(exc)}") from None
    onnx.save_model(converted, str(dst))
    io = "float32 inputs/outputs" if keep_io_float32 else "float16 inputs/outputs"
    _copy_metadata(src, dst, {"precision": f"fp16 ({io})"})


def add_preprocessing(src: Path, dst: Path, spec: ModelSpec) -> dict[str, Any]:
    """Put uint8 N×H×W×C (0–255) → float, NCHW, /255, (x - mean) / std in front of the graph.

    Returns what the metadata says is inside; resize and crop stay outside (a graph resize does not
    reproduce PIL's antialiased resize exactly), so the caller must feed H×W images.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    channels, height, width = spec.input_size
    model = onnx.load(str(src))
    graph = model.graph
    original = graph.input[0]
    model_type = original.type.tensor_type.elem_type
    np_type = np.float16 if model_type == onnx.TensorProto.FLOAT16 else np.float32
    consts = {
        "pre_scale": np.array(255.0, dtype=np.float32),
        "pre_mean": np.asarray(spec.mean, dtype=np.float32).reshape(1, channels, 1, 1),
        "pre_std": np.asarray(spec.std, dtype=np.float32).reshape(1, channels, 1, 1),
    }
    graph.initializer.extend(numpy_helper.from_array(v, name=k) for k, v in consts.items())
    last = "pre_normalised" if np_type is np.float16 else original.name
    nodes = [
        helper.make_node("Cast", ["image"], ["pre_float"], to=onnx.TensorProto.FLOAT, name="pre_cast"),
        helper.make_node("Transpose", ["pre_float"], ["pre_nchw"], perm=[0, 3, 1, 2], name="pre_nhwc_to_nchw"),
        helper.make_node("Div", ["pre_nchw", "pre_scale"], ["pre_unit"], name="pre_to_unit_range"),
        helper.make_node("Sub", ["pre_unit", "pre_mean"], ["pre_centred"], name="pre_sub_mean"),
        helper.make_node("Div", ["pre_centred", "pre_std"], [last], name="pre_div_std"),
    ]
    if np_type is np.float16:
        nodes.append(helper.make_node("Cast", [last], [original.name], to=model_type, name="pre_to_fp16"))
    new_nodes = nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    image = helper.make_tensor_value_info("image", onnx.TensorProto.UINT8, ["batch", height, width, channels])
    inputs = [image] + [i for i in graph.input if i.name != original.name]
    del graph.input[:]
    graph.input.extend(inputs)
    inside = {
        "input": f"image: uint8, N x {height} x {width} x {channels} (NHWC), values 0-255",
        "inside": ["uint8 -> float32", "NHWC -> NCHW", "divide by 255",
                   f"subtract mean {list(spec.mean)}", f"divide by std {list(spec.std)}"],
        "not_inside": [f"resize and center crop to {height}x{width} ({spec.interpolation}, crop_pct "
                       f"{spec.crop_pct}, crop_mode {spec.crop_mode}): do it before feeding the image",
                       "RGB channel order is expected" if channels == 3 else "one grayscale channel is expected"],
    }
    onnx.checker.check_model(model)
    onnx.save_model(model, str(dst))
    _copy_metadata(dst, dst, {"preprocessing": inside})
    return inside


def _pre_processed(src: Path) -> Path:
    """onnxruntime's recommended pre-quantization pass (shape inference, fusions); the file itself if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = src.with_name(src.stem + ".prequant.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    except Exception:  # the quantizer still works on the plain graph, only with fewer fusions
        return src
    return out


def _copy_metadata(src: Path, dst: Path, extra: dict[str, Any]) -> None:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    model = onnx.load(str(dst))
    props.update({p.key: p.value for p in model.metadata_props if p.key not in props})
    props.update({key: json.dumps(value) for key, value in extra.items()})
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(dst))


def _input_name(path: Path) -> str:
    import onnx

    return str(onnx.load(str(path), load_external_data=False).graph.input[0].name)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)
