"""Graph rewrites that make an ONNX file convertible by onnx2torch.

Each pass takes a model and returns a rewritten copy, or None when it has nothing to do.
None of them checks numerics: the importer runs onnxruntime before and after every pass.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx

# Ops whose output is not a pure function of their inputs: never fold them.
_NOT_FOLDABLE = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan",
}
_FOLD_MAX_ELEMENTS = 50_000_000
_SAME_PAD_OPS = {"Conv", "MaxPool", "AveragePool", "LpPool"}


def _copy(model: "onnx.ModelProto") -> "onnx.ModelProto":
    import onnx

    new = onnx.ModelProto()
    new.CopyFrom(model)
    return new


def real_inputs(model: "onnx.ModelProto") -> list["onnx.ValueInfoProto"]:
    """Graph inputs that are not initializers (IR < 4 files list every weight as an input too)."""
    init_names = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in init_names]


def strip_initializer_inputs(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Remove initializers from the graph inputs, so they are constants rather than overridable inputs."""
    init_names = {init.name for init in model.graph.initializer}
    if not any(value.name in init_names for value in model.graph.input):
        return None
    new = _copy(model)
    keep = [value for value in new.graph.input if value.name not in init_names]
    del new.graph.input[:]
    new.graph.input.extend(keep)
    return new


def set_input_dims(model: "onnx.ModelProto", dims: list[int | None]) -> "onnx.ModelProto | None":
    """Give the (single) input fixed sizes where ``dims`` has an int; None keeps the file's dim."""
    new = _copy(model)
    value = real_inputs(new)[0]
    shape = value.type.tensor_type.shape
    changed = False
    for dim, size in zip(shape.dim, dims):
        if size is not None and (not dim.HasField("dim_value") or dim.dim_value != size):
            dim.Clear()
            dim.dim_value = size
            changed = True
    return new if changed else None


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
    new = _copy(model)
    del new.graph.node[:]
    new.graph.node.extend(kept_nodes)
    for name, array in folded.items():
        new.graph.initializer.append(numpy_helper.from_array(array, name))
    _drop_unused_initializers(new)
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
    for evaluate in (_run_with_onnxruntime, lambda m, f: ReferenceEvaluator(m).run(None, f)):
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


def _run_with_onnxruntime(model: "onnx.ModelProto", feeds: dict[str, "np.ndarray"]) -> list["np.ndarray"]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _drop_unused_initializers(model: "onnx.ModelProto") -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {out.name for out in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def remove_identity(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Drop ``Identity`` nodes, wiring their consumers to their input (graph outputs keep theirs)."""
    graph_outputs = {out.name for out in model.graph.output}
    removable = [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] not in graph_outputs]
    if not removable:
        return None
    new = _copy(model)
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
        if node.op_type != "Reshape" or _attr(node, "allowzero", 0) != 1:
            return False
        shape = init_values.get(node.input[1])
        if shape is None:
            return True
        from onnx import numpy_helper

        return bool((numpy_helper.to_array(shape) != 0).all())

    if not any(droppable(node) for node in model.graph.node):
        return None
    new = _copy(model)
    for node in new.graph.node:
        if droppable(node):
            attrs = [a for a in node.attribute if a.name != "allowzero"]
            del node.attribute[:]
            node.attribute.extend(attrs)
    return new


# Ops with no onnx2torch converter that decompose_ops rewrites into convertible ones.
DECOMPOSABLE_OPS = {"Gelu"}


def decompose_ops(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Rewrite ``Gelu`` (opset 20) as Erf/Tanh arithmetic, which onnx2torch converts."""
    import numpy as np
    from onnx import helper, numpy_helper

    if not any(node.op_type in DECOMPOSABLE_OPS and node.domain in ("", "ai.onnx") for node in model.graph.node):
        return None
    new = _copy(model)
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
        if _attr(node, "approximate", b"none") == b"tanh":
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
        for attribute in node.attribute:
            old = old_schema.attributes.get(attribute.name)
            default = old.default_value if old is not None and old.default_value.name else None
            if (
                attribute.name not in new_schema.attributes
                and default is not None
                and helper.get_attribute_value(default) == helper.get_attribute_value(attribute)
            ):
                continue
            keep.append(attribute)
        if len(keep) != len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(keep)


def _static_shapes(model: "onnx.ModelProto") -> dict[str, list[int | None]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | None]] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def explicit_auto_pad(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """Rewrite ``auto_pad=SAME_UPPER/SAME_LOWER`` on Conv and pools to explicit ``pads``.

    onnx2torch rejects SAME auto-padding; the explicit pads depend on the input's spatial
    size, which shape inference gives us once the input size is fixed.
    """
    from onnx import helper

    targets = [
        n for n in model.graph.node
        if n.op_type in _SAME_PAD_OPS and _attr(n, "auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER")
    ]
    if not targets:
        return None
    shapes = _static_shapes(model)
    new = _copy(model)
    for node in new.graph.node:
        mode = _attr(node, "auto_pad", b"NOTSET")
        if node.op_type not in _SAME_PAD_OPS or mode not in (b"SAME_UPPER", b"SAME_LOWER"):
            continue
        in_shape = shapes.get(node.input[0])
        if node.op_type == "Conv":
            kernel = _attr(node, "kernel_shape", None) or (shapes.get(node.input[1]) or [])[2:]
        else:
            kernel = _attr(node, "kernel_shape", None)
        if not in_shape or not kernel or any(s is None for s in in_shape[2:]):
            raise ValueError(f"cannot resolve auto_pad on node {node.name or node.op_type}: spatial input size unknown")
        rank = len(kernel)
        strides = _attr(node, "strides", None) or [1] * rank
        dilations = _attr(node, "dilations", None) or [1] * rank
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
        pads = _attr(node, "pads", None)
        return node.op_type == "Conv" and bool(pads) and list(pads[: len(pads) // 2]) != list(pads[len(pads) // 2 :])

    if not any(asymmetric(node) for node in model.graph.node):
        return None
    new = _copy(model)
    opset = opset_of(new)
    nodes = []
    for node in new.graph.node:
        if not asymmetric(node):
            nodes.append(node)
            continue
        pads = list(_attr(node, "pads", None))
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
    shapes = _static_shapes(model)
    init_shape = {init.name: list(init.dims) for init in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {out.name for out in model.graph.output}

    new = _copy(model)
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


def _attr(node: "onnx.NodeProto", name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def rename_nodes(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Give every node a unique Python-identifier name, so module paths are valid dotted paths.

    Names follow the exporting model's module path where the file records it: torch's
    ``/layer1/layer1.0/conv1/Conv`` and the dynamo exporter's ``name_scopes`` both give
    ``layer1_0_conv1``. The weight-carrying node of a scope gets the bare scope name,
    other nodes in it get the op type appended.
    """
    new = _copy(model)
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

    shapes = _static_shapes(model)
    unknown = sorted({node.input[0] for node in model.graph.node
                      if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx") and not shapes.get(node.input[0])})
    if not unknown:
        return None
    probe = _copy(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in unknown)
    outputs = _run_with_onnxruntime(probe, {input_name: feed})[len(model.graph.output):]
    new = _copy(model)
    for name, array in zip(unknown, outputs):
        dims: list[int | str] = ["N", *array.shape[1:]]
        new.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
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
        if node.op_type == "Cast" and node.domain in ("", "ai.onnx") and _attr(node, "to", 0) == onnx.TensorProto.FLOAT
        and elem.get(node.input[0]) == onnx.TensorProto.FLOAT and node.output[0] not in graph_outputs
    }
    if not noop:
        return None

    def source(name: str) -> str:
        while name in noop:
            name = noop[name]
        return name

    new = _copy(model)
    kept = [node for node in new.graph.node if not (node.op_type == "Cast" and node.output and node.output[0] in noop)]
    for node in kept:
        node.input[:] = [source(name) for name in node.input]
    del new.graph.node[:]
    new.graph.node.extend(kept)
    return new
