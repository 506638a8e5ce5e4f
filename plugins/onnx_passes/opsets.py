"""Opset conversion and decomposing ops onnx2torch has no converter for."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

from workbench_plugins.onnx_passes.graph_basics import attribute, copy_model

# Ops with no onnx2torch converter that decompose_ops rewrites into convertible ones.
DECOMPOSABLE_OPS = {"Gelu"}

def decompose_ops(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Rewrite ``Gelu`` (opset 20) as Erf/Tanh arithmetic, which onnx2torch converts."""
    import numpy as np
    from onnx import helper, numpy_helper

    if not any(node.op_type in DECOMPOSABLE_OPS and node.domain in ("", "ai.onnx") for node in model.graph.node):
        return None
    new = copy_model(model)
    constants = {
        "gelu_half": 0.5, "gelu_one": 1.0, "gelu_inv_sqrt2": 1 / math.sqrt(2),
        "gelu_sqrt_2_over_pi": math.sqrt(2 / math.pi), "gelu_cubic": 0.044715,
    }
    existing = {init.name for init in new.graph.initializer}
    for name, value in constants.items():
        if name not in existing:
            new.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
    nodes = []
    for node in new.graph.node:
        if node.op_type != "Gelu" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        x, y, p = node.input[0], node.output[0], node.name
        if attribute(node, "approximate", b"none") == b"tanh":
            nodes += [
                helper.make_node("Mul", [x, x], [f"{p}_x2"], name=f"{p}_x2"),
                helper.make_node("Mul", [f"{p}_x2", x], [f"{p}_x3"], name=f"{p}_x3"),
                helper.make_node("Mul", [f"{p}_x3", "gelu_cubic"], [f"{p}_cx3"], name=f"{p}_cx3"),
                helper.make_node("Add", [x, f"{p}_cx3"], [f"{p}_inner"], name=f"{p}_inner"),
                helper.make_node("Mul", [f"{p}_inner", "gelu_sqrt_2_over_pi"], [f"{p}_scaled"], name=f"{p}_scaled"),
                helper.make_node("Tanh", [f"{p}_scaled"], [f"{p}_t"], name=f"{p}_tanh"),
            ]
        else:
            nodes += [
                helper.make_node("Mul", [x, "gelu_inv_sqrt2"], [f"{p}_scaled"], name=f"{p}_scaled"),
                helper.make_node("Erf", [f"{p}_scaled"], [f"{p}_t"], name=f"{p}_erf"),
            ]
        nodes += [
            helper.make_node("Add", [f"{p}_t", "gelu_one"], [f"{p}_plus1"], name=f"{p}_plus1"),
            helper.make_node("Mul", [x, f"{p}_plus1"], [f"{p}_xplus"], name=f"{p}_xplus"),
            helper.make_node("Mul", [f"{p}_xplus", "gelu_half"], [y], name=p),
        ]
    del new.graph.node[:]
    new.graph.node.extend(nodes)
    return new

def convert_opset(model: "onnx.ModelProto", target: int) -> "onnx.ModelProto | None":
    """Move the model to another default-domain opset with onnx.version_converter."""
    from onnx import version_converter

    from workbench_plugins.onnx_coverage import opset_of

    source = opset_of(model)
    if source == target:
        return None
    converted = version_converter.convert_version(model, target)
    _drop_default_attributes_unknown_at(converted, source, target)
    return converted

def _drop_default_attributes_unknown_at(model: "onnx.ModelProto", source: int, target: int) -> None:
    # Trap: version_converter keeps attributes that only exist in the newer schema (e.g.
    # ReduceMean-18's noop_with_empty_axes=0 going down to 17), which onnxruntime rejects.
    # Dropping them is exact when they hold the newer schema's default value.
    from onnx import defs, helper

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            new_schema = defs.get_schema(node.op_type, max_inclusive_version=target)
            old_schema = defs.get_schema(node.op_type, max_inclusive_version=source)
        except (RuntimeError, defs.SchemaError):
            continue
        keep = []
        for proto in node.attribute:
            old = old_schema.attributes.get(proto.name)
            default = old.default_value if old is not None and old.default_value.name else None
            if (
                proto.name not in new_schema.attributes
                and default is not None
                and helper.get_attribute_value(default) == helper.get_attribute_value(proto)
            ):
                continue
            keep.append(proto)
        if len(keep) != len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(keep)
