"""Checks on an ONNX file before any of it runs: sizes that cannot fit in memory, non-finite weights.

Without them such files fail deep inside onnxruntime or PyTorch with messages that blame
something else (a batch-size problem, a numpy ArrayMemoryError).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from workbench.errors import ModelLoadError
from workbench.plan import MAX_CHANNELS, MAX_SIDE

if TYPE_CHECKING:
    import onnx

MAX_TENSOR_BYTES = 4 * 2**30  # one constant tensor larger than this is not an image classifier
MAX_BATCH = 4096


def check_input_size(name: str, batch: int, size: tuple[int, int, int]) -> None:
    """The (fixed or requested) input must be an image a machine can hold."""
    channels, height, width = size
    if channels > MAX_CHANNELS or height > MAX_SIDE or width > MAX_SIDE or batch > MAX_BATCH:
        raise ModelLoadError(f"{name}: input size {batch}×{channels}×{height}×{width} is absurdly large (at most "
                             f"{MAX_CHANNELS} channels, {MAX_SIDE} pixels a side and a batch of {MAX_BATCH}); "
                             "re-export the model with a realistic input size or give --input-size")


def check_weights_finite(model: "onnx.ModelProto", name: str) -> None:
    """Float initializers holding NaN or infinity make every output NaN: name them instead."""
    import numpy as np
    from onnx import numpy_helper

    bad: list[str] = []
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad.append(init.name)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ModelLoadError(f"{name}: {len(bad)} weight tensor(s) hold NaN or infinite values ({shown}); "
                             "the file is damaged or was exported from a diverged model")


def check_constant_sizes(model: "onnx.ModelProto", name: str) -> None:
    """A ConstantOfShape (or Expand) whose constant target shape needs more than MAX_TENSOR_BYTES."""
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t
    for node in model.graph.node:
        if node.op_type not in ("ConstantOfShape", "Expand") or not node.input:
            continue
        shape_input = node.input[0] if node.op_type == "ConstantOfShape" else node.input[-1]
        if shape_input not in constants:
            continue
        shape = [int(v) for v in numpy_helper.to_array(constants[shape_input]).reshape(-1)]
        elements = math.prod(max(v, 1) for v in shape)
        if elements * 4 > MAX_TENSOR_BYTES:
            raise ModelLoadError(f"{name}: node {node.name or node.output[0]!r} ({node.op_type}) makes a tensor of "
                                 f"shape {shape} ({elements * 4 / 2**30:,.1f} GB at float32); the file cannot run "
                                 "on any ordinary machine")
