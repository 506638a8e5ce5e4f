"""Rewrites of padding and matrix products into forms onnx2torch converts (explicit pads, Gemm)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

from workbench_plugins.onnx_passes.graph_basics import attribute, copy_model, static_shapes

_SAME_PAD_OPS = {"Conv", "MaxPool", "AveragePool", "LpPool"}

def explicit_auto_pad(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Rewrite ``auto_pad=SAME_UPPER/SAME_LOWER`` on Conv and pools to explicit ``pads``.

    onnx2torch rejects SAME auto-padding; the explicit pads depend on the input's spatial
    size, which shape inference gives us once the input size is fixed.
    """
    from onnx import helper

    targets = [
        n for n in model.graph.node
        if n.op_type in _SAME_PAD_OPS and attribute(n, "auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER")
    ]
    if not targets:
        return None
    shapes = static_shapes(model)
    new = copy_model(model)
    for node in new.graph.node:
        mode = attribute(node, "auto_pad", b"NOTSET")
        if node.op_type not in _SAME_PAD_OPS or mode not in (b"SAME_UPPER", b"SAME_LOWER"):
            continue
        in_shape = shapes.get(node.input[0])
        if node.op_type == "Conv":
            kernel = attribute(node, "kernel_shape", None) or (shapes.get(node.input[1]) or [])[2:]
        else:
            kernel = attribute(node, "kernel_shape", None)
        if not in_shape or not kernel or any(s is None for s in in_shape[2:]):
            raise ValueError(f"cannot resolve auto_pad on node {node.name or node.op_type}: spatial input size unknown")
        rank = len(kernel)
        strides = attribute(node, "strides", None) or [1] * rank
        dilations = attribute(node, "dilations", None) or [1] * rank
        begins, ends = [], []
        for size, k, s, d in zip(in_shape[2:], kernel, strides, dilations):
            out = math.ceil(size / s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begins.append(small if mode == b"SAME_UPPER" else large)
            ends.append(large if mode == b"SAME_UPPER" else small)
        attrs = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(attrs)
        node.attribute.append(helper.make_attribute("pads", begins + ends))
    return new

def split_asymmetric_conv_pads(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Move asymmetric Conv padding into a ``Pad`` node before the Conv.

    onnx2torch would wrap such a Conv in ``nn.Sequential(pad, conv)``, so its weight's path
    would read ``conv.1.weight``; a separate Pad keeps it at ``conv.weight``.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    from workbench_plugins.onnx_coverage import opset_of

    def asymmetric(node: "onnx.NodeProto") -> bool:
        pads = attribute(node, "pads", None)
        return node.op_type == "Conv" and bool(pads) and list(pads[: len(pads) // 2]) != list(pads[len(pads) // 2 :])

    if not any(asymmetric(node) for node in model.graph.node):
        return None
    new = copy_model(model)
    opset = opset_of(new)
    nodes = []
    for node in new.graph.node:
        if not asymmetric(node):
            nodes.append(node)
            continue
        pads = list(attribute(node, "pads", None))
        half = len(pads) // 2
        full = [0, 0, *pads[:half], 0, 0, *pads[half:]]
        padded = f"{node.input[0]}_{node.name}_padded"
        if opset >= 11:
            pads_name = f"{node.name}_pads"
            new.graph.initializer.append(numpy_helper.from_array(np.array(full, np.int64), pads_name))
            nodes.append(helper.make_node("Pad", [node.input[0], pads_name], [padded], name=f"{node.name}_pad"))
        else:
            nodes.append(helper.make_node("Pad", [node.input[0]], [padded], pads=full, name=f"{node.name}_pad"))
        node.input[0] = padded
        attrs = [a for a in node.attribute if a.name != "pads"]
        del node.attribute[:]
        node.attribute.extend(attrs)
        nodes.append(node)
    del new.graph.node[:]
    new.graph.node.extend(nodes)
    return new

def matmul_add_to_gemm(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Turn ``MatMul(x, W) [+ b]`` on 2-D activations into ``Gemm``, which converts to ``nn.Linear``."""
    from onnx import helper

    init_rank = {init.name: len(init.dims) for init in model.graph.initializer}
    candidates = [n for n in model.graph.node if n.op_type == "MatMul" and init_rank.get(n.input[1]) == 2]
    if not candidates:
        return None
    shapes = static_shapes(model)
    init_shape = {init.name: list(init.dims) for init in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {out.name for out in model.graph.output}

    new = copy_model(model)
    by_output = {n.output[0]: n for n in new.graph.node if n.output}
    replaced: set[str] = set()
    changed = False
    for matmul in [n for n in new.graph.node if n.op_type == "MatMul" and init_rank.get(n.input[1]) == 2]:
        a_shape = shapes.get(matmul.input[0])
        if a_shape is None or len(a_shape) != 2:
            continue
        out_features = init_shape[matmul.input[1]][1]
        users = consumers.get(matmul.output[0], [])
        inputs = [matmul.input[0], matmul.input[1]]
        output = matmul.output[0]
        absorbed = None
        if len(users) == 1 and users[0].op_type == "Add" and matmul.output[0] not in graph_outputs:
            add = by_output[users[0].output[0]]
            other = add.input[1] if add.input[0] == matmul.output[0] else add.input[0]
            if init_shape.get(other) in ([out_features], [1, out_features]) and len(init_shape[other]) == 1:
                inputs.append(other)
                output = add.output[0]
                absorbed = add
        gemm = helper.make_node("Gemm", inputs, [output], name=matmul.name or f"gemm_{output}")
        matmul.CopyFrom(gemm)
        if absorbed is not None:
            replaced.add(absorbed.output[0])
        changed = True
    if not changed:
        return None
    kept = [n for n in new.graph.node if not (n.op_type == "Add" and n.output[0] in replaced)]
    del new.graph.node[:]
    new.graph.node.extend(kept)
    return new
