"""Turn an ONNX file into a trainable PyTorch module, checked against onnxruntime.

Pipeline: read and validate the file, check operator coverage, apply rewrite passes
(each validated with onnxruntime before/after), convert with onnx2torch, then make
every weight an ``nn.Parameter``, adapt NHWC input, find the classifier and compare
the result with onnxruntime on the original file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from workbench.errors import ModelLoadError
from workbench_plugins.onnx_input_size import feature_size, is_nhwc, resolve_input_size, single_image_input

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import torch.fx as fx
    import torch.nn as nn

_BATCH_HELP = (
    "re-export it with a dynamic batch axis, e.g. torch.onnx.export(model, x, f, dynamo=False, "
    "input_names=['input'], dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}}) "
    "or dynamo=True with dynamic_shapes={'x': {0: torch.export.Dim('batch')}}"
)


@dataclass
class OnnxImport:
    """The converted module and everything learnt about the file on the way."""

    module: "nn.Module"
    input_size: tuple[int, ...]  # (C, H, W) for an image input, (F,) for a feature input
    num_classes: int
    classifier: str | None
    metadata: dict[str, str]
    notices: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def read_onnx(path: Path) -> "onnx.ModelProto":
    """Load an ONNX file (with external data), or raise a ModelLoadError naming it."""
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{path} is not a valid ONNX model (could not parse it: {reason})") from exc
    if not model.graph.node or not model.graph.output or not model.opset_import:
        raise ModelLoadError(f"{path} is not a valid ONNX model (no graph, outputs or opset in the file)")
    return model


def check_onnx(model: "onnx.ModelProto", path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise ModelLoadError(f"{path} is not a valid ONNX model (checker: {reason})") from exc


def import_onnx(path: Path, input_size: tuple[int, ...] | None = None, num_classes: int | None = None) -> OnnxImport:
    """Convert the ONNX file at ``path``; see the module docstring for the steps."""
    import numpy as np
    import torch

    from workbench_plugins.onnx_coverage import convertible_opset, opset_of, unsupported_ops
    from workbench_plugins.onnx_ort import max_abs_diff, try_run_onnxruntime, within_tolerance
    from workbench_plugins.onnx_passes import annotate_batchnorm_ranks, rename_nodes
    from workbench_plugins.onnx_sanity import check_constant_sizes, check_input_size, check_weights_finite

    original = read_onnx(path)
    name = path.name
    metadata = {prop.key: prop.value for prop in original.metadata_props}
    op_counts = Counter(node.op_type for node in original.graph.node)
    report: dict[str, Any] = {
        "ir_version": int(original.ir_version),
        "opset": opset_of(original),
        "op_types": dict(sorted(op_counts.items())),
    }
    notices: list[str] = []

    never = _never_convertible(original)
    if never:
        raise ModelLoadError(f"{name}: unsupported operators (no PyTorch converter in onnx2torch): {', '.join(never)}")
    check_onnx(original, path)
    check_weights_finite(original, name)
    check_constant_sizes(original, name)

    graph_input = single_image_input(original, name)
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in graph_input.type.tensor_type.shape.dim]
    features = len(dims) == 2  # a feature vector per sample (tabular data), not an image
    nhwc = not features and is_nhwc(original, graph_input.name, dims)
    batch = dims[0] or 1
    size: tuple[int, ...]
    if features:
        size = feature_size(dims, input_size, name)
        file_dims: list[int | None] = [None, size[0]]
        feed_shape: tuple[int, ...] = (batch, size[0])
    else:
        image_size = resolve_input_size(dims, nhwc, input_size, metadata, name, graph_input.name)
        size = image_size
        if input_size is None and any(d is None for d in dims[1:]) and "input_size" not in metadata:
            shown = ", ".join(["N"] + ["?" if v is None else str(v) for v in dims[1:]])
            notices.append(f"input {graph_input.name!r} has free dimensions [{shown}]; opened it at "
                           f"{'x'.join(map(str, size))} (C x H x W): set --input-size C,H,W or "
                           "input_size = [C, H, W] under [model] to use another size")
        check_input_size(name, batch, image_size)
        channels, height, width = image_size
        file_dims = [None, height, width, channels] if nhwc else [None, channels, height, width]
        feed_shape = (batch, height, width, channels) if nhwc else (batch, channels, height, width)
    rng = np.random.default_rng(0)
    feed = rng.standard_normal(feed_shape).astype(np.float32)

    # Named first: version_converter drops the node metadata the names come from.
    named = rename_nodes(original)
    # Module names must be Python identifiers; the file's own node names are kept for the layer tree's tooltips.
    file_names = {new.name: old.name for old, new in zip(original.graph.node, named.graph.node)
                  if old.name and old.name != new.name}
    runner = _PassRunner(named, feed, graph_input.name)
    runner.apply("strip_initializer_inputs", _pass("strip_initializer_inputs"))
    if any(d is None for d in dims[1:]):
        runner.apply("fix_input_size", lambda m: _set_dims(m, file_dims))
    runner.apply("fold_constants", _pass("fold_constants"))
    runner.apply("remove_identity", _pass("remove_identity"))
    runner.apply("decompose_ops", _pass("decompose_ops"))
    runner.apply("drop_reshape_allowzero", _pass("drop_reshape_allowzero"))

    target = convertible_opset(runner.model)
    if target is None:
        missing = unsupported_ops(runner.model, opset_of(runner.model))
        raise ModelLoadError(f"{name}: unsupported operators (no PyTorch converter in onnx2torch at any opset): {', '.join(missing)}")
    if target != opset_of(runner.model):
        source_opset = opset_of(runner.model)
        applied = runner.apply(f"convert_opset_{source_opset}_to_{target}", lambda m: _convert_opset(m, target))
        if not applied:
            missing = unsupported_ops(runner.model, source_opset)
            raise ModelLoadError(
                f"{name}: operators {', '.join(missing)} need opset {target} for conversion, "
                f"but onnx.version_converter could not move the graph there ({runner.last_failure})"
            )
        runner.apply("fold_constants", _pass("fold_constants"))
    runner.apply("explicit_auto_pad", _pass("explicit_auto_pad"))
    runner.apply("split_asymmetric_conv_pads", _pass("split_asymmetric_conv_pads"))
    runner.apply("drop_noop_casts", _pass("drop_noop_casts"))
    runner.apply("matmul_add_to_gemm", _pass("matmul_add_to_gemm"))
    runner.apply("annotate_batchnorm_ranks", lambda m: annotate_batchnorm_ranks(m, runner.feed, runner.input_name))

    missing = unsupported_ops(runner.model, opset_of(runner.model))
    if missing:
        raise ModelLoadError(f"{name}: unsupported operators (no PyTorch converter in onnx2torch): {', '.join(missing)}")

    model = rename_nodes(runner.model)
    op_types = {node.name: node.op_type for node in model.graph.node}
    module = _convert(model, name, runner.rejected)

    from workbench_plugins.onnx_trainable import (
        adapt_nhwc_input,
        find_classifier,
        promote_constants,
        replace_linear_head,
        strip_final_softmax,
    )

    if _keep_first_output(module):
        notices.append(f"{name} has several outputs; using the first as the logits")
    if nhwc:
        adapt_nhwc_input(module, op_types)
        notices.append("the file takes NHWC input; adapted the module to take NCHW")
    promotion = promote_constants(module, op_types)
    module.eval()

    out_shape = _check_batch(module, size, name)

    # Parity is measured before the final Softmax is stripped: like with like (the file's
    # probabilities against the module's), not logits against probabilities.
    torch_input = feed.transpose(0, 3, 1, 2).copy() if nhwc else feed
    with torch.no_grad():
        torch_out = module(torch.from_numpy(torch_input)).numpy()
    reference = try_run_onnxruntime(original, feed, graph_input.name)
    parity: float | None = None
    if reference is None:
        notices.append("onnxruntime could not run the original file; parity with it is unchecked")
    else:
        parity = max_abs_diff(reference, torch_out)
        if not within_tolerance(reference, parity):
            notices.append(f"converted module differs from onnxruntime by up to {parity:.3g}: check it before training")

    stripped = strip_final_softmax(module, op_types, torch.from_numpy(torch_input))
    if stripped:
        notices.append(f"removed the final {stripped} so the module returns logits "
                       "(parity was checked on the file's own output, before removing it)")
    output_kind = _output_kind(module, size, out_shape)
    if output_kind != "logits":
        notices.append(output_kind)

    file_classes = int(out_shape[-1])
    classifier = find_classifier(module, op_types) if len(out_shape) == 2 else None
    final_classes = file_classes
    if num_classes is not None and num_classes != file_classes:
        if classifier is None:
            raise ModelLoadError(f"cannot change num_classes of {name}: no classifier layer found before the output")
        replace_linear_head(module, classifier, num_classes)
        final_classes = _check_head(module, size, num_classes, name)
        notices.append(f"replaced classifier {classifier!r} ({file_classes} classes) with a new Linear for {num_classes} classes")

    for p in module.parameters():
        p.requires_grad_(True)
    trainable = [p for p in module.parameters() if p.requires_grad]
    bn_count = op_counts.get("BatchNormalization", 0)
    report.update(
        trainable_tensors=len(trainable),
        trainable_params=int(sum(p.numel() for p in trainable)),
        promoted_to_parameters=promotion.promoted,
        constant_buffers=promotion.constant_buffers,
        batchnorm=f"present: {bn_count} BatchNormalization nodes" if bn_count
        else "none in graph: folded into convolutions at export, or never present",
        input_layout="NHWC (adapted: the module takes NCHW)" if nhwc else "features (N, F)" if features else "NCHW",
        passes=runner.applied,
        rejected_passes=runner.rejected,
        parity_max_abs_diff=parity,
        parity_compared="the file's output with the module's, before stripping the " + stripped if stripped
        else "the file's output with the module's",
        output_shape=["N", *out_shape[1:]],
        output_kind="logits" if output_kind == "logits" else "not logits: " + output_kind,
        source_names={name: file_names[name] for name, _mod in module.named_children() if name in file_names},
    )
    if runner.applied:
        notices.append("applied graph passes: " + ", ".join(p["name"] for p in runner.applied))
    for rejected in runner.rejected:
        notices.append(f"skipped pass {rejected['name']}: {rejected['reason']}")
    if promotion.promoted:
        notices.append(f"made {len(promotion.promoted)} constant weight tensor(s) trainable")
    return OnnxImport(module, size, final_classes, classifier, metadata, notices, report)


class _PassRunner:
    """Applies rewrite passes, keeping each only if onnxruntime gives the same output after it."""

    def __init__(self, model: "onnx.ModelProto", feed: "np.ndarray", input_name: str) -> None:
        from workbench_plugins.onnx_ort import try_run_onnxruntime

        self.model = model
        self.feed = feed
        self.input_name = input_name
        self.reference = try_run_onnxruntime(model, feed, input_name)
        self.applied: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.last_failure = ""

    def apply(self, name: str, rewrite: Callable[["onnx.ModelProto"], "onnx.ModelProto | None"]) -> bool:
        """Run one pass; True when it changed the model and passed validation."""
        from workbench_plugins.onnx_ort import max_abs_diff, try_run_onnxruntime, within_tolerance

        try:
            new = rewrite(self.model)
        except Exception as exc:
            return self._reject(name, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        if new is None:
            return False
        after = try_run_onnxruntime(new, self.feed, self.input_name)
        if self.reference is None:
            diff = None  # onnxruntime cannot run this graph: nothing to validate against
            self.reference = after
        elif after is None:
            return self._reject(name, "onnxruntime cannot run the rewritten graph")
        else:
            diff = max_abs_diff(self.reference, after)
            if not within_tolerance(self.reference, diff):
                return self._reject(name, f"changed the output by {diff:.3g}")
        self.model = new
        self.applied.append({"name": name, "max_abs_diff": diff})
        return True

    def _reject(self, name: str, reason: str) -> bool:
        self.rejected.append({"name": name, "reason": reason})
        self.last_failure = reason
        return False


def _pass(name: str) -> Callable[["onnx.ModelProto"], "onnx.ModelProto | None"]:
    import workbench_plugins.onnx_passes as passes

    return getattr(passes, name)


def _set_dims(model: "onnx.ModelProto", dims: list[int | None]) -> "onnx.ModelProto | None":
    from workbench_plugins.onnx_passes import set_input_dims

    return set_input_dims(model, dims)


def _convert_opset(model: "onnx.ModelProto", target: int) -> "onnx.ModelProto | None":
    from workbench_plugins.onnx_passes import convert_opset

    return convert_opset(model, target)


def _never_convertible(model: "onnx.ModelProto") -> list[str]:
    """Labels of ops that no opset change or constant folding can make convertible."""
    from workbench_plugins.onnx_coverage import ONNX_DOMAINS, _label, ever_convertible
    from workbench_plugins.onnx_passes import DECOMPOSABLE_OPS

    constant = {init.name for init in model.graph.initializer}
    found: set[str] = set()
    for node in model.graph.node:
        inputs = [name for name in node.input if name]
        if node.domain in ONNX_DOMAINS and all(name in constant for name in inputs) and (inputs or node.op_type == "Constant"):
            constant.update(node.output)  # foldable: it will not reach the converter
            continue
        if not ever_convertible(node.op_type, node.domain) and not (node.domain in ONNX_DOMAINS and node.op_type in DECOMPOSABLE_OPS):
            found.add(_label(model, node.op_type, node.domain))
    return sorted(found)


def _convert(model: "onnx.ModelProto", name: str, rejected: list[dict[str, Any]]) -> "fx.GraphModule":
    from onnx2torch import convert

    try:
        return convert(model)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        hint = "; skipped passes: " + ", ".join(r["name"] for r in rejected) if rejected else ""
        raise ModelLoadError(f"{name}: onnx2torch could not convert the graph ({type(exc).__name__}: {reason}){hint}") from exc


def _keep_first_output(module: "fx.GraphModule") -> bool:
    graph = module.graph
    output = next(node for node in graph.nodes if node.op == "output")
    value = output.args[0]
    if isinstance(value, (tuple, list)):
        output.args = (value[0],)
        graph.eliminate_dead_code()
        module.recompile()
        return True
    return False


def _check_batch(module: "nn.Module", size: tuple[int, ...], name: str) -> tuple[int, ...]:
    """The module must map (N, C, H, W) to (N, ...) for N > 1, sample by sample; the output shape."""
    import torch

    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(1))
    try:
        with torch.no_grad():
            both = module(x)
            first = module(x[:1])
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        if isinstance(exc, MemoryError) or "alloc" in reason.lower() or "out of memory" in reason.lower():
            raise ModelLoadError(f"{name} runs out of memory on a batch of 2 images ({reason}): a layer makes a "
                                 "huge tensor; the file is not usable as an image classifier") from exc
        raise ModelLoadError(f"{name} fails on a batch of 2 ({reason}): the graph likely hard-codes batch size 1; {_BATCH_HELP}") from exc
    if not isinstance(both, torch.Tensor) or both.dim() < 2 or not both.is_floating_point():
        shape = tuple(both.shape) if isinstance(both, torch.Tensor) else type(both).__name__
        raise ModelLoadError(f"{name}: expected a float output of shape (N, ...), the output is {shape}")
    if both.shape[0] != 2 or not torch.allclose(both[:1], first, rtol=1e-4, atol=1e-4):
        raise ModelLoadError(f"{name} mixes samples across the batch (output {tuple(both.shape)} for 2 inputs): it hard-codes batch size 1; {_BATCH_HELP}")
    return tuple(int(v) for v in both.shape)


def _output_kind(module: "nn.Module", size: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
    """"logits", or why the output cannot be trained with cross-entropy as it is."""
    import torch

    shown = "(" + ", ".join(["N", *map(str, out_shape[1:])]) + ")"
    if len(out_shape) != 2:
        return (f"the output has shape {shown}, not (N, classes): inspect and freeze work; "
                "to train, cut the graph and attach a new head ([head] in the project file)")
    with torch.no_grad():
        out = module(3 * torch.randn(3, *size, generator=torch.Generator().manual_seed(2)))
    if out.shape[1] > 1 and bool((out >= 0).all()) and torch.allclose(out.sum(dim=1), torch.ones(3), atol=1e-4):
        return ("the output rows sum to 1 (probabilities, not logits) after a layer that is not a plain Softmax: "
                "training with cross-entropy would be wrong; cut the graph and attach a new head ([head] in the project file)")
    return "logits"


def _check_head(module: "nn.Module", size: tuple[int, ...], num_classes: int, name: str) -> int:
    import torch

    with torch.no_grad():
        out = module(torch.zeros(2, *size))
    if tuple(out.shape) != (2, num_classes):
        raise ModelLoadError(f"{name}: after replacing the classifier the output has shape {tuple(out.shape)}, not (N, {num_classes})")
    return num_classes
