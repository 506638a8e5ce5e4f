"""The input an imported ONNX model takes: its one image (or feature-vector) input, NHWC or NCHW, and its size.

The size comes from the file's fixed dimensions, the request, the file's metadata, or a stated default for
dimensions the file leaves free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.errors import ModelLoadError

if TYPE_CHECKING:
    import onnx

FLOAT = 1  # onnx.TensorProto.FLOAT
CHANNEL_COUNTS = (1, 3, 4)


def single_image_input(model: "onnx.ModelProto", name: str) -> "onnx.ValueInfoProto":
    from workbench_plugins.onnx_passes import real_inputs

    inputs = real_inputs(model)
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs)
        raise ModelLoadError(f"{name}: expected one image input, the graph has {len(inputs)} ({names})")
    value = inputs[0]
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type != FLOAT:
        raise ModelLoadError(f"{name}: input {value.name!r} is not float32 (ONNX elem_type {tensor_type.elem_type}); only float32 image inputs are supported")
    if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) not in (2, 4):
        rank = len(tensor_type.shape.dim) if tensor_type.HasField("shape") else "unknown"
        raise ModelLoadError(f"{name}: input {value.name!r} must be a 4-D image batch (N, C, H, W) or a 2-D feature batch (N, F), its rank is {rank}")
    return value


def feature_size(dims: list[int | None], requested: tuple[int, ...] | None, name: str) -> tuple[int]:
    """(F,) for a 2-D feature input: the file's fixed width, or the request's."""
    if requested is not None:
        asked = tuple(int(v) for v in requested)
        if len(asked) != 1 or (dims[1] is not None and asked[0] != dims[1]):
            raise ModelLoadError(f"{name}: the input is a feature batch (N, {dims[1] or 'F'}); input_size must be [{dims[1] or 'F'}], got {list(asked)}")
        return (asked[0],)
    if dims[1] is None:
        raise ModelLoadError(f"{name}: the feature input has no fixed width (N, ?); give it with input_size = [F] under [model]")
    return (dims[1],)


def is_nhwc(model: "onnx.ModelProto", input_name: str, dims: list[int | None]) -> bool:
    """TensorFlow-style input: channels last, or only consumed by a Transpose to NCHW."""
    from onnx import helper

    consumers = [node for node in model.graph.node if input_name in node.input]
    if consumers and all(
        node.op_type == "Transpose"
        and [list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"] == [[0, 3, 1, 2]]
        for node in consumers
    ):
        return True
    return dims[3] in CHANNEL_COUNTS and dims[1] is not None and dims[1] not in CHANNEL_COUNTS


def resolve_input_size(
    dims: list[int | None], nhwc: bool, requested: tuple[int, ...] | None,
    metadata: dict[str, str], name: str, input_name: str,
) -> tuple[int, int, int]:
    """(C, H, W): the request's, else the file's fixed dims, else the file's metadata."""
    import json

    file_size = (dims[3], dims[1], dims[2]) if nhwc else (dims[1], dims[2], dims[3])
    if requested is not None:
        asked_size = tuple(int(v) for v in requested)
        clash = [f"{label}={fixed} (asked {asked})" for label, fixed, asked in zip("CHW", file_size, asked_size) if fixed is not None and fixed != asked]
        if clash:
            raise ModelLoadError(f"{name}: the file fixes its input size to {', '.join(clash)}; drop --input-size or re-export the model")
        channels, height, width = asked_size
        return (channels, height, width)
    file_channels, file_height, file_width = file_size
    if file_channels is not None and file_height is not None and file_width is not None:
        return (file_channels, file_height, file_width)
    if "input_size" in metadata:
        try:
            meta_size = tuple(int(v) for v in json.loads(metadata["input_size"]))
        except (ValueError, TypeError):
            meta_size = ()
        if len(meta_size) == 3:
            return meta_size
    return default_size(file_size)


DEFAULT_SIDE = 224


def default_size(file_size: tuple[int | None, int | None, int | None]) -> tuple[int, int, int]:
    """Fill free dims: 3 channels; 224 for a free side, or the smallest multiple of the
    fixed side that reaches 224 when only one side is free (an OCR 3×48×W opens at 3×48×240)."""
    channels, height, width = file_size
    return (channels or 3, free_side(height, width), free_side(width, height))


def free_side(side: int | None, other: int | None) -> int:
    """``side`` if fixed; else 224, or the smallest multiple of the fixed ``other`` side that reaches 224."""
    if side is not None:
        return side
    if other is None:
        return DEFAULT_SIDE
    return other * max(1, -(-DEFAULT_SIDE // other))
