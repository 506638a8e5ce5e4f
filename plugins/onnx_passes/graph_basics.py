"""Helpers every ONNX pass shares: copying a model, its real inputs, attributes, static shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx


def copy_model(model: "onnx.ModelProto") -> "onnx.ModelProto":
    import onnx

    new = onnx.ModelProto()
    new.CopyFrom(model)
    return new

def real_inputs(model: "onnx.ModelProto") -> list["onnx.ValueInfoProto"]:
    """Graph inputs that are not initializers (IR < 4 files list every weight as an input too)."""
    init_names = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in init_names]

def drop_unused_initializers(model: "onnx.ModelProto") -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {out.name for out in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)

def static_shapes(model: "onnx.ModelProto") -> dict[str, list[int | None]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | None]] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes

def attribute(node: "onnx.NodeProto", name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default
