"""Passes that remove what onnx2torch cannot convert and the model does not need (Identity, allowzero, no-op casts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

from workbench_plugins.onnx_passes.graph_basics import attribute, copy_model


def remove_identity(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Drop ``Identity`` nodes, wiring their consumers to their input (graph outputs keep theirs)."""
    graph_outputs = {out.name for out in model.graph.output}
    removable = [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] not in graph_outputs]
    if not removable:
        return None
    new = copy_model(model)
    rename: dict[str, str] = {}
    kept = []
    for node in new.graph.node:
        if node.op_type == "Identity" and node.output[0] not in graph_outputs:
            source = node.input[0]
            rename[node.output[0]] = rename.get(source, source)
            continue
        kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del new.graph.node[:]
    new.graph.node.extend(kept)
    return new

def drop_reshape_allowzero(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Clear ``allowzero=1`` on Reshape (the dynamo exporter sets it; onnx2torch rejects it).

    It only matters when the target shape holds a 0: constant shapes are checked for
    zeros; shapes computed from the input's own (non-empty) dims never hold one.
    """
    init_values = {init.name: init for init in model.graph.initializer}

    def droppable(node: "onnx.NodeProto") -> bool:
        if node.op_type != "Reshape" or attribute(node, "allowzero", 0) != 1:
            return False
        shape = init_values.get(node.input[1])
        if shape is None:
            return True
        from onnx import numpy_helper

        return bool((numpy_helper.to_array(shape) != 0).all())

    if not any(droppable(node) for node in model.graph.node):
        return None
    new = copy_model(model)
    for node in new.graph.node:
        if droppable(node):
            attrs = [a for a in node.attribute if a.name != "allowzero"]
            del node.attribute[:]
            node.attribute.extend(attrs)
    return new

def drop_noop_casts(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Remove ``Cast(to=FLOAT)`` of tensors that are already float32 (tf2onnx writes
    ``MatMul → Cast → Add → Cast → Softmax`` classifier tails), so the MatMul+Add becomes a Linear."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    elem = {value.name: value.type.tensor_type.elem_type
            for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    elem.update({init.name: init.data_type for init in model.graph.initializer})
    graph_outputs = {out.name for out in model.graph.output}
    noop = {
        node.output[0]: node.input[0] for node in model.graph.node
        if node.op_type == "Cast" and node.domain in ("", "ai.onnx") and attribute(node, "to", 0) == onnx.TensorProto.FLOAT
        and elem.get(node.input[0]) == onnx.TensorProto.FLOAT and node.output[0] not in graph_outputs
    }
    if not noop:
        return None

    def source(name: str) -> str:
        while name in noop:
            name = noop[name]
        return name

    new = copy_model(model)
    kept = [node for node in new.graph.node if not (node.op_type == "Cast" and node.output and node.output[0] in noop)]
    for node in kept:
        node.input[:] = [source(name) for name in node.input]
    del new.graph.node[:]
    new.graph.node.extend(kept)
    return new
