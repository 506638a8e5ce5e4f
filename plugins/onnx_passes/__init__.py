"""Graph rewrites that make an ONNX file convertible by onnx2torch, one module per kind of rewrite.

Each pass takes a model and returns a rewritten copy, or None when it has nothing to do.
None of them checks numerics: the importer runs onnxruntime before and after every pass
(and finds a pass by its name here).
"""

from workbench_plugins.onnx_passes.cleanup import drop_noop_casts, drop_reshape_allowzero, remove_identity
from workbench_plugins.onnx_passes.folding import fold_constants
from workbench_plugins.onnx_passes.graph_basics import real_inputs
from workbench_plugins.onnx_passes.inputs import set_input_dims, strip_initializer_inputs
from workbench_plugins.onnx_passes.layout import explicit_auto_pad, matmul_add_to_gemm, split_asymmetric_conv_pads
from workbench_plugins.onnx_passes.naming import annotate_batchnorm_ranks, rename_nodes
from workbench_plugins.onnx_passes.opsets import DECOMPOSABLE_OPS, convert_opset, decompose_ops

__all__ = [
    "DECOMPOSABLE_OPS", "annotate_batchnorm_ranks", "convert_opset", "decompose_ops", "drop_noop_casts",
    "drop_reshape_allowzero", "explicit_auto_pad", "fold_constants", "matmul_add_to_gemm", "real_inputs",
    "remove_identity", "rename_nodes", "set_input_dims", "split_asymmetric_conv_pads", "strip_initializer_inputs",
]
