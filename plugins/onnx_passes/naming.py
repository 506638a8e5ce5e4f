"""Module names from the ONNX graph (so freeze selectors read like the source model) and BatchNorm ranks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

from workbench_plugins.onnx_passes.folding import run_with_onnxruntime
from workbench_plugins.onnx_passes.graph_basics import copy_model, static_shapes


def rename_nodes(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Give every node a unique Python-identifier name, so module paths are valid dotted paths.

    Names follow the exporting model's module path where the file records it: torch's
    ``/layer1/layer1.0/conv1/Conv`` and the dynamo exporter's ``name_scopes`` both give
    ``layer1_0_conv1``. The weight-carrying node of a scope gets the bare scope name,
    other nodes in it get the op type appended.
    """
    new = copy_model(model)
    scopes = [_scope_of(node) for node in new.graph.node]
    owners: dict[str, list[int]] = {}
    for index, (node, scope) in enumerate(zip(new.graph.node, scopes)):
        if scope and node.op_type in _WEIGHT_OPS:
            owners.setdefault(scope, []).append(index)
    counts = {scope: scopes.count(scope) for scope in set(scopes) if scope}
    seen: set[str] = set()
    for index, (node, scope) in enumerate(zip(new.graph.node, scopes)):
        if scope and (counts[scope] == 1 or owners.get(scope) == [index]):
            base = scope
        elif scope:
            base = f"{scope}_{node.op_type}"
        else:
            base = _identifier(node.name) or node.op_type
        base = _identifier(base) or f"{node.op_type}_{index}"
        name, counter = base, 1
        while name in seen:
            name = f"{base}_{counter}"
            counter += 1
        seen.add(name)
        node.name = name
    return new

_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization", "InstanceNormalization"}

def _scope_of(node: "onnx.NodeProto") -> str:
    """The exporting module's path, ``a.b.c`` as ``a_b_c``, or '' when the file does not say."""
    import ast

    parts: list[str] = []
    scopes_prop = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
    if scopes_prop is not None:
        try:
            parts = [str(p) for p in ast.literal_eval(scopes_prop)][1:-1]
        except (ValueError, SyntaxError):
            parts = []
    elif node.name.startswith("/") and node.name.count("/") >= 2:
        parts = node.name.strip("/").split("/")[:-1]
    path: list[str] = []
    for part in parts:
        # torch's legacy scopes repeat the parent: layer1 / layer1.0 / conv1
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return _identifier("_".join(path))

def _identifier(text: str) -> str:
    name = re.sub(r"\W+", "_", text).strip("_")
    return f"n{name}" if name and name[0].isdigit() else name

def annotate_batchnorm_ranks(model: "onnx.ModelProto", feed: "np.ndarray", input_name: str) -> "onnx.ModelProto | None":
    """Give every BatchNormalization input a shape, measured with onnxruntime where inference has none.

    onnx2torch picks BatchNorm1d/2d/3d from the input's rank in value_info; when shape
    inference cannot follow a Reshape whose target is computed at run time (text
    recognizers), it fails with "BatchNorm operation with spatial rank == -2".
    """
    from onnx import TensorProto, helper

    shapes = static_shapes(model)
    unknown = sorted({node.input[0] for node in model.graph.node
                      if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx") and not shapes.get(node.input[0])})
    if not unknown:
        return None
    probe = copy_model(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in unknown)
    outputs = run_with_onnxruntime(probe, {input_name: feed})[len(model.graph.output):]
    new = copy_model(model)
    for name, array in zip(unknown, outputs):
        dims: list[int | str] = ["N", *array.shape[1:]]
        new.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    return new
