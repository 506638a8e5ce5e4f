"""Surgery on the torch.fx GraphModule onnx2torch returns: trainable weights, NCHW input, the head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    import torch.fx as fx
    import torch.nn as nn

# ONNX ops whose multi-element float constant inputs are weights (become nn.Parameters).
COMPUTE_OPS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "Add", "Sub", "Mul", "Div", "Sum", "PRelu",
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "Concat", "Expand", "Tile", "Where", "Max", "Min", "Pow",
}
# Ops a classifier's output may pass through on its way to the graph output.
_PASS_THROUGH_OPS = {"Flatten", "Reshape", "Squeeze", "Identity", "Dropout", "Cast"}
_PARAM_NAME = {"Conv": "weight", "ConvTranspose": "weight", "Gemm": "weight", "MatMul": "weight", "Einsum": "weight",
               "Add": "bias", "Sub": "bias", "Mul": "scale", "Div": "scale", "PRelu": "slope"}
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class PromotionResult:
    promoted: list[str] = field(default_factory=list)
    constant_buffers: list[str] = field(default_factory=list)


def promote_constants(gm: "fx.GraphModule", op_types: dict[str, str]) -> PromotionResult:
    """Make float initializers that feed compute ops into Parameters on their first consumer module.

    onnx2torch keeps every initializer it did not bake into a module (MatMul and Add
    weights, layer scales, PReLU slopes...) as a buffer behind a ``get_attr`` node; left
    there, it would never train. ``op_types`` maps module names to their ONNX op types.
    """

    result = PromotionResult()
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or not node.target.startswith("initializers."):
            continue
        buffer_name = node.target.split(".", 1)[1]
        container = gm.get_submodule("initializers")
        tensor: torch.Tensor = getattr(container, buffer_name)
        if not tensor.is_floating_point():
            continue
        consumers = [user for user in node.users if user.op == "call_module"]
        consumer_ops = sorted({f"{op_types.get(str(user.target), '?')} {user.target}" for user in consumers})
        if tensor.numel() <= 1:
            result.constant_buffers.append(f"{node.target}: scalar constant of {', '.join(consumer_ops) or 'the graph'}")
            continue
        weight_users = [user for user in consumers if op_types.get(str(user.target)) in COMPUTE_OPS]
        if not weight_users:
            result.constant_buffers.append(f"{node.target}: feeds {', '.join(consumer_ops) or 'no module'}, not a compute op")
            continue
        # Trap: exporters deduplicate equal constants (e.g. every zero-initialised bias becomes
        # one tensor), so one initializer may feed many layers: give each layer its own copy.
        for index, user in enumerate(weight_users):
            target = _register_parameter(gm, str(user.target), op_types, tensor)
            if index == 0:
                node.target = target
            else:
                with gm.graph.inserting_before(user):
                    user.replace_input_with(node, gm.graph.get_attr(target))
            result.promoted.append(target)
        delattr(container, buffer_name)
    gm.recompile()
    for name, buffer in gm.named_buffers():
        if buffer.is_floating_point() and not name.endswith(_BN_STATS) and not name.startswith("initializers."):
            result.constant_buffers.append(f"{name}: stored as a constant by the converter")
    return result


def _register_parameter(gm: "fx.GraphModule", owner_name: str, op_types: dict[str, str], tensor: "torch.Tensor") -> str:
    import torch.nn as nn

    owner = gm.get_submodule(owner_name)
    base = _PARAM_NAME.get(op_types.get(owner_name, ""), "param")
    param_name, counter = base, 1
    while hasattr(owner, param_name):
        param_name = f"{base}_{counter}"
        counter += 1
    owner.register_parameter(param_name, nn.Parameter(tensor.detach().clone(), requires_grad=True))
    return f"{owner_name}.{param_name}"


def adapt_nhwc_input(gm: "fx.GraphModule", op_types: dict[str, str]) -> None:
    """Make a graph that expects NHWC input accept NCHW.

    When the input only feeds ``Transpose(perm=[0, 3, 1, 2])`` nodes those are dropped;
    otherwise a ``permute`` to NHWC is inserted right after the input.
    """
    graph = gm.graph
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    users = list(placeholder.users)
    to_nchw = [
        user for user in users
        if user.op == "call_module" and op_types.get(str(user.target)) == "Transpose"
        and list(getattr(gm.get_submodule(str(user.target)), "perm", []) or []) == [0, 3, 1, 2]
    ]
    if users and len(to_nchw) == len(users):
        for user in to_nchw:
            user.replace_all_uses_with(placeholder)
            graph.erase_node(user)
            _delete_submodule(gm, str(user.target))
    else:
        with graph.inserting_after(placeholder):
            permuted = graph.call_method("permute", (placeholder, (0, 2, 3, 1)))
        placeholder.replace_all_uses_with(permuted, delete_user_cb=lambda user: user is not permuted)
    graph.lint()
    gm.recompile()


def strip_final_softmax(gm: "fx.GraphModule", op_types: dict[str, str], sample: "torch.Tensor") -> str | None:
    """Bypass a Softmax/LogSoftmax that produces the output, so the module returns logits.

    The Softmax may be followed by no-op or shape-only nodes (Identity, Cast, Reshape,
    Flatten, Squeeze, Dropout). Those are dropped too when the output keeps its shape on
    ``sample`` without them (a Reshape to [-1, classes] would break a new head's class
    count). Returns the stripped op type, or None.
    """
    import torch

    output = next(node for node in gm.graph.nodes if node.op == "output")
    last = output.args[0]
    tail = []
    while getattr(last, "op", None) == "call_module" and op_types.get(str(last.target)) in _PASS_THROUGH_OPS and last.args:
        if len(last.users) != 1:
            return None
        tail.append(last)
        last = last.args[0]
    op_type = op_types.get(str(getattr(last, "target", "")))
    if getattr(last, "op", None) != "call_module" or op_type not in ("Softmax", "LogSoftmax") or len(last.users) != 1:
        return None
    logits = last.args[0]
    last.replace_all_uses_with(logits)
    gm.graph.erase_node(last)
    _delete_submodule(gm, str(last.target))
    gm.recompile()
    if tail:
        with torch.no_grad():
            shape = gm(sample).shape
        kept = output.args
        output.args = (logits,)
        gm.recompile()
        with torch.no_grad():
            same = gm(sample).shape == shape
        if same:
            for node in tail:
                gm.graph.erase_node(node)
                _delete_submodule(gm, str(node.target))
        else:
            output.args = kept
    gm.graph.lint()
    gm.recompile()
    return op_type


def find_classifier(gm: "fx.GraphModule", op_types: dict[str, str]) -> str | None:
    """The module path of the layer that produces the logits, walking back past reshapes."""
    import operator

    output = next(node for node in gm.graph.nodes if node.op == "output")
    node = output.args[0]
    while node is not None and hasattr(node, "op"):
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            if any(True for _ in module.parameters(recurse=True)):
                return str(node.target)
            if op_types.get(str(node.target)) not in _PASS_THROUGH_OPS:
                return None
            node = node.args[0] if node.args else None
        elif node.op == "call_function" and node.target is operator.getitem:
            node = node.args[0]
        else:
            return None
    return None


def replace_linear_head(gm: "fx.GraphModule", path: str, num_classes: int) -> "nn.Module":
    """Swap the classifier for a fresh ``nn.Linear`` with ``num_classes`` outputs."""
    import torch.nn as nn

    from workbench.errors import ModelLoadError

    head = gm.get_submodule(path)
    if not isinstance(head, nn.Linear):
        raise ModelLoadError(
            f"cannot change num_classes: the classifier {path!r} converted to {type(head).__name__}, not a Linear layer"
        )
    new_head = nn.Linear(head.in_features, num_classes)
    parent_name, _, child = path.rpartition(".")
    setattr(gm.get_submodule(parent_name) if parent_name else gm, child, new_head)
    return new_head


def _delete_submodule(gm: "fx.GraphModule", target: str) -> None:
    if not any(node.op == "call_module" and node.target == target for node in gm.graph.nodes):
        gm.delete_submodule(target)
