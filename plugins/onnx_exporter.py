"""The ONNX exporter: torch.onnx (TorchScript-based, then dynamo), checked with onnxruntime on real batches.

Large models go to external data; an ONNX import is exported back through onnx2torch's own converters.
Parity as for every exporter (``workbench_plugins.exporters``).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.atomic import atomic_path, check_file_target, scratch_folder
from workbench.errors import WorkbenchError
from workbench.export import ExportResult
from workbench.export_runners import Runner, ort_runner, quiet_session
from workbench.spec import ModelSpec
from workbench_plugins.exporters import (
    DEFAULT_TOLERANCE,
    CandidateFailed,
    check_parity,
    logits,
    one_line,
    prepared,
    random_batch,
    set_metadata,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

DEFAULT_OPSET = 17
# Protobuf cannot hold more than 2 GiB: bigger models keep their weights in "<file>.data".
EXTERNAL_DATA_BYTES = 2 * 1024**3 - 64 * 1024**2


class OnnxExporter:
    """An ONNX file with a dynamic batch axis and the spec in ``metadata_props``, checked with onnxruntime."""

    name = "onnx"
    description = "ONNX file (opset 17+, dynamic batch), checked against PyTorch with onnxruntime"
    output_kind = "file"
    suffix = ".onnx"
    makes_onnx_variants = True  # export --quantize / --precision fp16 / --with-preprocessing start from its file

    def load_for_report(self, paths: list[Path], model: "nn.Module") -> Runner:
        return ort_runner(paths[0])

    def __init__(self, opset: int = DEFAULT_OPSET) -> None:
        if opset < 17:
            raise ValueError(f"opset must be 17 or newer, got {opset}")
        self.opset = opset

    def export(self, module: "nn.Module", spec: ModelSpec, out: Path, recipe_toml: str | None = None,
               tolerance: float | None = None) -> ExportResult:
        out = Path(out)
        tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        model = prepared(module)
        # Traced at batch 2 (below), checked at 3 and 1: a graph that kept the traced batch size fails here.
        checks = [(batch, x, logits(model, x)) for batch, x in ((3, random_batch(spec, 3, 2)), (1, random_batch(spec, 1, 1)))]
        problems: list[str] = []
        for exporter in ("TorchScript-based", "dynamo"):
            try:
                with scratch_folder(out) as scratch:
                    raw = scratch / "raw.onnx"
                    reason = torch_onnx_export(model, spec, raw, self.opset, dynamo=exporter == "dynamo")
                    if reason is not None:
                        problems.append(f"{exporter} exporter {reason}")
                        continue
                    paths, diff = self._finish(raw, scratch, out, spec, recipe_toml, checks, tolerance, exporter)
            except CandidateFailed as failed:
                problems.append(str(failed))
                continue
            except OSError as exc:
                raise WorkbenchError(f"cannot write {out}: {exc.strerror or exc}") from None
            message = (f"wrote {', '.join(str(p) for p in paths)} (opset {file_opset(out)}, {exporter} exporter, "
                       f"dynamic batch); max abs diff vs PyTorch {diff:.3g} at batch 1 and 3 (onnxruntime)")
            if problems:
                message += "; " + "; ".join(problems)
            return ExportResult(self.name, paths, diff, message)
        hint = ""
        if spec.architecture.startswith("onnx:") and any("fails on a batch of" in p for p in problems):
            hint = ("; onnx2torch modules that compute shapes at run time (e.g. a ViT class token) trace with a fixed batch size; "
                    "export the weights as safetensors instead")
        raise WorkbenchError(f"ONNX export of {spec.architecture} failed, no file written: " + "; ".join(problems) + hint)

    def _finish(self, raw: Path, scratch: Path, out: Path, spec: ModelSpec, recipe_toml: str | None,
                checks: list[tuple[int, "torch.Tensor", "np.ndarray"]], tolerance: float, exporter: str) -> tuple[list[Path], float]:
        """Add metadata, write the final file(s) and check them; raises CandidateFailed on a bad graph."""
        import onnx
        from onnx.external_data_helper import load_external_data_for_model

        model = onnx.load(str(raw), load_external_data=False)
        # The exporters may put weights in files beside raw.onnx (dynamo always does): count them in.
        external_bytes = sum(p.stat().st_size for p in scratch.iterdir() if p != raw)
        size = model.ByteSize() + external_bytes
        if external_bytes:
            load_external_data_for_model(model, str(scratch))
        set_metadata(model, spec, recipe_toml)
        if size < EXTERNAL_DATA_BYTES:
            with atomic_path(out) as tmp:
                onnx.save_model(model, str(tmp))
                diff = _ort_parity(tmp, spec, checks, tolerance, exporter)
            return [out], diff
        # Large model: both files are made and checked in the scratch folder, then renamed into place.
        data = out.with_name(out.name + ".data")
        staged = scratch / out.name
        onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=0)
        diff = _ort_parity(staged, spec, checks, tolerance, exporter)
        check_file_target(data)
        check_file_target(out)
        os.replace(scratch / data.name, data)
        os.replace(staged, out)
        return [out, data], diff


def file_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def torch_onnx_export(model: "nn.Module", spec: ModelSpec, path: Path, opset: int, dynamo: bool) -> str | None:
    """Run one of torch's ONNX exporters into ``path``; the reason it could not, or None."""
    import torch

    x = random_batch(spec, 2, seed=0)
    try:
        # Trap: the exporters print graph IR and diagnostics to stdout; the CLI must not show it.
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if dynamo:
                import importlib.util

                if importlib.util.find_spec("onnxscript") is None:
                    return "not tried: onnxscript is not installed"
                batch = torch.export.Dim("batch", min=1)
                torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=True, verbose=False,
                                  dynamic_shapes=({0: batch},),
                                  input_names=["input"], output_names=["logits"], opset_version=opset)
            else:
                with _onnx2torch_compat():
                    torch.onnx.export(model, (x,), str(path), dynamo=False, do_constant_folding=True,
                                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                                      input_names=["input"], output_names=["logits"], opset_version=opset)
    except OSError:
        raise
    except Exception as exc:
        return f"failed: {one_line(exc)}"
    return None


def _ort_parity(path: Path, spec: ModelSpec, checks: list[tuple[int, "torch.Tensor", "np.ndarray"]],
                tolerance: float, exporter: str) -> float:
    import onnxruntime as ort

    try:
        session = quiet_session(path)
    except Exception as exc:
        raise CandidateFailed(f"{exporter} exporter: onnxruntime cannot load the file: {one_line(exc)}") from None
    run_options = ort.RunOptions()
    run_options.log_severity_level = 3  # the failure is reported in our error, not logged to stderr too
    diff = 0.0
    for batch, x, reference in checks:
        try:
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()}, run_options)[0]
        except Exception as exc:
            raise CandidateFailed(f"{exporter} exporter: the file fails on a batch of {batch} "
                                   f"(batch size not dynamic?): {one_line(exc)}") from None
        diff = max(diff, check_parity("ONNX", spec, reference, got, tolerance, candidate=exporter))
    return diff


@contextlib.contextmanager
def _onnx2torch_compat() -> Iterator[None]:
    """onnx2torch's export hooks read ``torch.onnx.symbolic_helper.GLOBALS``, which newer torch moved away."""
    import torch.onnx.symbolic_helper as helper

    if hasattr(helper, "GLOBALS") or hasattr(helper, "_export_onnx_opset_version"):
        yield
        return
    try:
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:
        yield
        return
    helper.GLOBALS = GLOBALS  # type: ignore[attr-defined]  # re-adds what this torch removed: not in its stubs
    try:
        yield
    finally:
        del helper.GLOBALS  # type: ignore[attr-defined]
