"""Running an ONNX graph with onnxruntime: the reference every rewrite and conversion is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

RELATIVE_TOLERANCE = 1e-4


def run_onnxruntime(model: "onnx.ModelProto | bytes", feed: "np.ndarray", input_name: str) -> "np.ndarray":
    """The first output of the model for one input array (CPU, default optimisations)."""
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: feed})[0]


def try_run_onnxruntime(model: "onnx.ModelProto | bytes", feed: "np.ndarray", input_name: str) -> "np.ndarray | None":
    """Like :func:`run_onnxruntime`, but None when onnxruntime cannot run the graph."""
    try:
        return run_onnxruntime(model, feed, input_name)
    except Exception:  # onnxruntime raises many unrelated types (Fail, InvalidGraph, RuntimeException...)
        return None


def max_abs_diff(reference: "np.ndarray", other: "np.ndarray") -> float:
    import numpy as np

    if reference.shape != other.shape:
        return float("inf")
    return float(np.max(np.abs(reference.astype(np.float64) - other.astype(np.float64)))) if reference.size else 0.0


def within_tolerance(reference: "np.ndarray", diff: float, rtol: float = RELATIVE_TOLERANCE) -> bool:
    """``diff`` is small relative to the reference's magnitude (absolute below magnitude 1)."""
    import numpy as np

    scale = max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0
    return diff <= rtol * scale
