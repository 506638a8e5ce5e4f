"""Which ONNX operators onnx2torch can convert, and at which opset a graph becomes convertible."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

ONNX_DOMAINS = ("", "ai.onnx")
# Opsets we may move a graph to with onnx.version_converter, in order of preference:
# onnx2torch covers opsets up to 17 best, so the nearest opset at or below 17 comes first.
_MIN_TARGET, _MAX_TARGET = 7, 21


def opset_of(model: "onnx.ModelProto") -> int:
    """The default-domain opset the model imports."""
    for entry in model.opset_import:
        if entry.domain in ONNX_DOMAINS:
            return entry.version
    return 1


def has_converter(op_type: str, domain: str, opset: int) -> bool:
    """Whether onnx2torch has a converter for this op at this opset (mirrors its own lookup)."""
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    domain = "" if domain in ONNX_DOMAINS else domain
    version = opset
    try:
        version = defs.get_schema(op_type, max_inclusive_version=opset, domain=domain).since_version
    except (RuntimeError, defs.SchemaError):
        if domain == "":
            return False  # the op does not exist at this opset at all
    return OperationDescription(domain=domain, operation_type=op_type, version=version) in _CONVERTER_REGISTRY


def ever_convertible(op_type: str, domain: str) -> bool:
    """Whether onnx2torch converts this op at any opset we could move the graph to."""
    return any(has_converter(op_type, domain, v) for v in range(_MIN_TARGET, _MAX_TARGET + 1))


def unsupported_ops(model: "onnx.ModelProto", opset: int, *, any_opset: bool = False) -> list[str]:
    """Sorted ``domain::Op (opset N)`` labels of the ops onnx2torch cannot convert."""
    found: set[str] = set()
    for node in model.graph.node:
        ok = ever_convertible(node.op_type, node.domain) if any_opset else has_converter(node.op_type, node.domain, opset)
        if not ok:
            found.add(_label(model, node.op_type, node.domain))
    return sorted(found)


def _label(model: "onnx.ModelProto", op_type: str, domain: str) -> str:
    if domain in ONNX_DOMAINS:
        return f"{op_type} (opset {opset_of(model)})"
    version = next((e.version for e in model.opset_import if e.domain == domain), "?")
    return f"{domain}::{op_type} (opset {version})"


def convertible_opset(model: "onnx.ModelProto") -> int | None:
    """The opset nearest the model's own at which every op has a converter, or None."""
    current = opset_of(model)
    ops = {(n.op_type, n.domain) for n in model.graph.node}
    if all(has_converter(op, dom, current) for op, dom in ops):
        return current
    candidates = sorted(
        (v for v in range(_MIN_TARGET, _MAX_TARGET + 1) if v != current),
        key=lambda v: (v > 17, abs(v - current), -v),
    )
    for version in candidates:
        if all(has_converter(op, dom, version) for op, dom in ops):
            return version
    return None
