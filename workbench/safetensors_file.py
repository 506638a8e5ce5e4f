"""Writing safetensors files one tensor at a time (the format the safetensors library reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A safetensors file written one tensor at a time (read back by the safetensors library).

    safetensors' ``save_file`` needs every tensor contiguous at once; a channels_last model's
    weights then exist twice while the file is written (+44 MB at the end of a resnet18 run).
    Here each tensor is made contiguous only while it is written. Tensors that share memory are
    written once per name, as ``save_file`` does after ``untied``.
    """
    import json
    import struct
    import sys

    from safetensors.torch import save_file

    if sys.byteorder != "little" or any(t.dtype not in SAFETENSORS_DTYPES for t in tensors.values()):
        # (a big-endian machine; complex, float8…): the library's way
        save_file({k: v.contiguous() for k, v in untied(tensors).items()}, str(path))
        return
    header: dict[str, Any] = {}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as the library writes it
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for tensor in tensors.values():
            if tensor.numel():
                fh.write(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)


def untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory; clone the later ones."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
