"""Whether saved weights fit a model: which tensors are missing, extra or of another shape, in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch.nn as nn


def state_mismatch(model: "nn.Module", state: dict[str, Any]) -> str | None:
    """None when ``state`` loads into ``model`` exactly; else what differs (counts, first few names, shapes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} saved vs {list(expected[k].shape)} now" for k in state
              if k in expected and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape ({'; '.join(shapes[:2])})")
    if missing:
        parts.append(f"{len(missing)} tensor(s) the model needs are not saved ({', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} saved tensor(s) the model does not have ({', '.join(unexpected[:3])})")
    return ", ".join(parts) or None
