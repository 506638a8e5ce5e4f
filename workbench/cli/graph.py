"""``workbench graph``: the model's wiring as a graph (torch.fx, or the ONNX graph of an import)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.cli.common import model_options, source_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="the model's wiring as a graph (torch.fx, or the ONNX graph of an import)")
    source_argument(p)
    p.add_argument("--full", action="store_true", help="every operation instead of blocks")
    p.add_argument("--expand", action="append", default=[], metavar="PATH", help="show this block's inside (repeatable)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the drawing (.svg, .png or .pdf)")
    p.add_argument("--json", action="store_true", help="print nodes (path, type, output shape, parameters, state) "
                   "and edges (from, to, skip)")
    model_options(p, "C,H,W for the shape pass (ONNX inputs with free dims)")
    p.set_defaults(run=_cmd_graph)


def _cmd_graph(args: argparse.Namespace) -> int:
    import torch

    from workbench.looking.inputs import find_module
    from workbench.looking.model_graph import graph_figure, lay_out, model_graph
    from workbench.looking.pictures import picture_format, save
    from workbench.predict import load_predictor

    if args.out is not None:
        picture_format(args.out)
    predictor = load_predictor(args.source, args.pretrained, args.arch, args.input_size)
    for path in args.expand:
        find_module(predictor.module, path)
    example = torch.randn(1, *predictor.spec.input_size)
    graph = model_graph(predictor.module, example, collapse=not args.full, expanded=frozenset(args.expand))
    if args.out is not None:
        lay_out(graph)
        save(graph_figure(graph, f"{predictor.spec.architecture} ({predictor.weights})"), args.out)
    if args.json:
        print(json.dumps(graph.to_json(), indent=1))
    else:
        skips = len(graph.skips()) + sum(n.skips for n in graph.nodes)
        print(f"{predictor.spec.architecture}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
              f"{skips} skip connection{'s' if skips != 1 else ''} ({'blocks' if graph.collapsed else 'every operation'})")
        for n in graph.nodes:
            shape = "×".join(map(str, n.output_shape[1:])) if n.output_shape else "?"
            inside = f"  ({n.skips} skip inside)" if n.skips else ""
            print(f"  {n.id:<28} {n.type_name:<24} {shape:<14} {n.params:>11,}  {n.state}{inside}")
        if args.out is not None:
            print(f"wrote {args.out}")
    return 0
