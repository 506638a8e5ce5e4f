"""Constant folding: subgraphs that depend only on initializers, evaluated once (onnx reference or onnxruntime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

from workbench_plugins.onnx_passes.graph_basics import copy_model, drop_unused_initializers

# Ops whose output is not a pure function of their inputs: never fold them.
_NOT_FOLDABLE = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan",
}

_FOLD_MAX_ELEMENTS = 50_000_000

def fold_constants(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Evaluate every node whose inputs are all constants and store its outputs as initializers.

    Turns ``Constant`` nodes, ``DequantizeLinear(int8 weight)``, ``Transpose(weight)``,
    ``Identity(weight)`` and the like into plain float initializers that onnx2torch can
    make into module weights. Uses onnx's reference evaluator one node at a time.
    """
    from onnx import numpy_helper

    graph = model.graph
    values: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    graph_outputs = {out.name for out in graph.output}
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    kept_nodes = []
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        foldable = (
            node.domain in ("", "ai.onnx")
            and node.op_type not in _NOT_FOLDABLE
            and (inputs or node.op_type == "Constant")
            and all(name in values for name in inputs)
            and not any(out in graph_outputs for out in node.output)
        )
        outputs = _evaluate_node(node, values, opsets, max(model.ir_version, 4)) if foldable else None
        if outputs is None:
            kept_nodes.append(node)
            continue
        for name, array in zip(node.output, outputs):
            if name:
                values[name] = array
                folded[name] = array
    if not folded:
        return None
    new = copy_model(model)
    del new.graph.node[:]
    new.graph.node.extend(kept_nodes)
    for name, array in folded.items():
        new.graph.initializer.append(numpy_helper.from_array(array, name))
    drop_unused_initializers(new)
    return new

def _evaluate_node(node: "onnx.NodeProto", values: dict[str, "np.ndarray"], opsets: dict[str, int], ir_version: int) -> list["np.ndarray"] | None:
    """The node's outputs for constant inputs: onnxruntime first, onnx's reference evaluator as fallback."""
    import numpy as np
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    feeds = {name: values[name] for name in node.input if name}
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
        for name, array in feeds.items()
    ]
    graph_outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    graph = helper.make_graph([node], "fold", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = ir_version
    results = None
    for evaluate in (run_with_onnxruntime, lambda m, f: ReferenceEvaluator(m).run(None, f)):
        try:
            results = evaluate(model, feeds)
            break
        except Exception:  # an op this evaluator lacks, or odd attributes: try the next, else keep the node
            continue
    if results is None:
        return None
    arrays = []
    for result in results:
        if not isinstance(result, np.ndarray) or result.size > _FOLD_MAX_ELEMENTS:
            return None
        try:
            numpy_helper.from_array(result)
        except Exception:  # a dtype ONNX cannot store (object arrays, ...)
            return None
        arrays.append(result)
    return arrays

def run_with_onnxruntime(model: "onnx.ModelProto", feeds: dict[str, "np.ndarray"]) -> list["np.ndarray"]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
