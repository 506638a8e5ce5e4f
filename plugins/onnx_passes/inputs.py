"""Passes on the graph inputs: initializers listed as inputs, fixed input dimensions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

from workbench_plugins.onnx_passes.graph_basics import copy_model, real_inputs


def strip_initializer_inputs(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Remove initializers from the graph inputs, so they are constants rather than overridable inputs."""
    init_names = {init.name for init in model.graph.initializer}
    if not any(value.name in init_names for value in model.graph.input):
        return None
    new = copy_model(model)
    keep = [value for value in new.graph.input if value.name not in init_names]
    del new.graph.input[:]
    new.graph.input.extend(keep)
    return new

def set_input_dims(model: "onnx.ModelProto", dims: list[int | None]) -> "onnx.ModelProto | None":
    """Give the (single) input fixed sizes where ``dims`` has an int; None keeps the file's dim."""
    new = copy_model(model)
    value = real_inputs(new)[0]
    shape = value.type.tensor_type.shape
    changed = False
    for dim, size in zip(shape.dim, dims):
        if size is not None and (not dim.HasField("dim_value") or dim.dim_value != size):
            dim.Clear()
            dim.dim_value = size
            changed = True
    return new if changed else None
