"""Exporting a model: the result type every exporter plugin returns, and the one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class ExportResult:
    """What an export wrote, and how closely the exported model matches the PyTorch one.

    ``parity_max_abs_diff`` is None when the format was not run back (e.g. safetensors).
    """

    format: str
    paths: list[Path]
    parity_max_abs_diff: float | None
    message: str


def export_model(
    module: "nn.Module",
    spec: ModelSpec,
    fmt: str,
    out: str | Path,
    recipe_toml: str | None = None,
    tolerance: float | None = None,
) -> ExportResult:
    """Export ``module`` with the exporter plugin named ``fmt`` (``safetensors``, ``torchscript``, ``onnx``...).

    ``tolerance`` overrides the exporter's parity tolerance; it is passed only when given,
    so third-party exporters without that keyword still work. The caller's module is not changed.
    LoRA adapters (``[adapters]``) are merged into their base weights first: the exported model is the
    plain architecture, with no adapter code.
    """
    from workbench.errors import WorkbenchError
    from workbench.finite import nonfinite_tensors
    from workbench.plugins import EXPORTERS, registry

    bad = nonfinite_tensors(module)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise WorkbenchError(f"refusing to export: {len(bad)} tensor(s) hold NaN or inf ({shown}); these weights "
                             "are broken (a diverged run?). Export an earlier checkpoint or retrain with a lower LR")
    exporter = registry().get(EXPORTERS, fmt)
    from workbench.adapters import has_adapters

    if has_adapters(module):
        from workbench.adapters import merged_copy

        module = merged_copy(module)
    kwargs = {} if tolerance is None else {"tolerance": tolerance}
    target = Path(out).expanduser()
    check_export_target(target, getattr(exporter, "output_kind", "file"))
    return exporter.export(module, spec, target, recipe_toml, **kwargs)


def check_export_target(out: Path, kind: str) -> None:
    """Before any work: refuse an output that is a device, FIFO, socket or the wrong kind (file vs folder)."""
    from workbench.atomic import check_file_target, check_folder_target
    from workbench.errors import WorkbenchError

    try:
        if kind == "folder":
            check_folder_target(out)
        else:
            check_file_target(out)
            check_folder_target(out.parent)
    except WorkbenchError as exc:
        reason = str(exc)
        raise WorkbenchError(reason if reason.startswith("cannot write") else f"cannot write {out}: {reason}") from None