"""What to say when ``torch.load(weights_only=True)`` refuses a file: never torch's advice to turn the check off.

Torch's own message suggests re-running with ``weights_only=False`` or allow-listing the class;
both run the file's code. We say the file contains code, what it names, and how its owner can
convert it safely (re-save only the tensors where the file was made).
"""

from __future__ import annotations

import re

CONVERT = ("if the file is your own, re-save only its tensors where it was made: "
           "torch.save(model.state_dict(), PATH), or better safetensors.torch.save_file(model.state_dict(), PATH)")


def describe_load_error(exc: BaseException) -> str:
    """One line for a failed ``torch.load(..., weights_only=True)``."""
    import pickle

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        found = re.search(r"Unsupported (?:global|operand)[^.\n]*?(?=\s+was not an allowed|\.|\n|$)", text)
        what = f" ({found.group(0).strip()})" if found else ""
        return f"it contains code, not only tensors{what}: loading it could run that code, so it is refused; {CONVERT}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0][:300] if lines else type(exc).__name__
