"""How an export's report runs a model: a PyTorch module, or an ONNX file in onnxruntime.

Each exporter plugin says how to run the files it wrote (``load_for_report``), using these.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

Runner = Callable[["np.ndarray"], "np.ndarray"]  # a batch in the format's input → logits (float32)


def torch_runner(model: "nn.Module") -> Runner:
    import torch

    def run(x: "np.ndarray") -> "np.ndarray":
        with torch.inference_mode():
            y = model(torch.from_numpy(x))
        return (y[0] if isinstance(y, (tuple, list)) else y).float().numpy()

    return run


def quiet_session(path: Path) -> Any:
    """An onnxruntime CPU session that logs nothing itself (callers report failures in their own words)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(path: Path) -> Runner:
    import numpy as np

    try:
        session = quiet_session(path)
    except Exception as exc:
        raise WorkbenchError(f"onnxruntime cannot load the exported file: {' '.join(str(exc).split())[:300]}") from None
    first = session.get_inputs()[0]
    dtype = np.float16 if first.type == "tensor(float16)" else None

    def run(x: "np.ndarray") -> "np.ndarray":
        feed = x.astype(dtype) if dtype is not None else x
        return np.asarray(session.run(None, {first.name: feed})[0], dtype=np.float32)

    return run
