"""The wiring as a graph: nodes, data-flow edges and skip connections, from torch.fx and from ONNX imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from tests.test_looking import one_error_line
from workbench.cli import main
from workbench.looking.model_graph import GraphUnavailable, model_graph


def test_resnet18_has_the_skip_connections_of_its_8_basic_blocks() -> None:
    model = timm.create_model("resnet18").eval()
    full = model_graph(model, torch.randn(1, 3, 64, 64), collapse=False)
    skips = full.skips()
    assert len(skips) == 8 and all(full.node(e.target).type_name == "add" for e in skips)
    # Each skip leaves from its block's input: the block before it, or the shortcut's downsample for the first of a stage.
    assert {e.source for e in skips} == {"maxpool", "layer1.0.act2", "layer2.0.downsample.1", "layer2.0.act2",
                                         "layer3.0.downsample.1", "layer3.0.act2", "layer4.0.downsample.1",
                                         "layer4.0.act2"}
    blocks = model_graph(model, torch.randn(1, 3, 64, 64))
    basic = [n for n in blocks.nodes if n.type_name == "BasicBlock"]
    assert [n.id for n in basic] == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert all(n.skips == 1 for n in basic) and blocks.skips() == []  # each skip lies inside its block
    assert blocks.node("layer2.0").output_shape == (1, 128, 8, 8)
    assert blocks.node("layer2.0").params == sum(p.numel() for p in model.layer2[0].parameters())
    chain = [(e.source, e.target) for e in blocks.edges]
    assert ("layer1.1", "layer2.0") in chain and ("global_pool", "fc") in chain and len(chain) == len(blocks.nodes) - 1


@pytest.mark.parametrize("meta_tensors_work", [True, False])
def test_every_shape_is_the_real_forward_passs(monkeypatch: pytest.MonkeyPatch, meta_tensors_work: bool) -> None:
    """Shapes come from a weightless copy on the meta device or, where that fails, one real pass: the same."""
    if not meta_tensors_work:
        real_empty_like = torch.empty_like

        def no_meta(tensor: torch.Tensor, *args: object, device: object = None, **kwargs: object) -> torch.Tensor:
            if device == "meta":
                raise NotImplementedError("an operator meta tensors do not support")
            return real_empty_like(tensor, *args, device=device, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setattr(torch, "empty_like", no_meta)
    model = timm.create_model("efficientnet_lite0", num_classes=7).eval()
    example = torch.randn(1, 3, 64, 48)
    graph = model_graph(model, example, collapse=False)
    real: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: real.__setitem__(name, tuple(out.shape)))
             for name, m in model.named_modules() if name and not list(m.children())]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    shown = {n.path: n.output_shape for n in graph.nodes if n.path in real}
    assert len(shown) > 40 and shown == {path: real[path] for path in shown}
    assert graph.node("classifier").output_shape == (1, 7)


def test_expanding_a_block_and_freeze_states() -> None:
    model = timm.create_model("resnet18").eval()
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    model.layer2[0].conv1.weight.requires_grad_(False)
    graph = model_graph(model, torch.randn(1, 3, 32, 32), expanded=frozenset({"layer1.0"}))
    states = {n.id: n.state for n in graph.nodes}
    assert states["layer1.0.conv1"] == "frozen" and states["layer1.1"] == "frozen"
    assert states["layer2.0"] == "partial" and states["layer2.1"] == "trainable" and states["maxpool"] == "none"
    skip = graph.skips()
    assert len(skip) == 1 and skip[0].source == "maxpool" and graph.node(skip[0].target).type_name == "add"


@pytest.mark.slow
def test_an_onnx_import_is_its_onnx_graph(tmp_path: Path) -> None:
    from tests.onnx_cases import export_torch
    from workbench.predict import load_predictor

    model = timm.create_model("resnet10t", num_classes=3).eval()
    imported = load_predictor(str(export_torch(model, tmp_path / "m.onnx", opset=17, size=32)),
                              input_size=(3, 32, 32))
    graph = model_graph(imported.module, torch.randn(1, 3, 32, 32), collapse=False)
    assert len(graph.skips()) == 4  # resnet10t: one basic block per stage, each with its skip (an ONNX Add)
    assert all(graph.node(e.target).type_name == "OnnxBinaryMathOperation" for e in graph.skips())


def test_a_model_fx_cannot_trace_says_why() -> None:
    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(GraphUnavailable, match="cannot be traced with torch.fx"):
        model_graph(Branchy(), torch.randn(1, 3, 8, 8))


def test_graph_cli_json_and_svg(tmp_path: Path, capsys) -> None:
    out = tmp_path / "graph.svg"
    assert main(["graph", "resnet18", "--input-size", "3,64,64", "--json", "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["layer1.0"] == {"id": "layer1.0", "path": "layer1.0", "type": "BasicBlock",
                                 "output_shape": [1, 64, 16, 16], "params": 73984, "state": "trainable",
                                 "skips_inside": 1}
    assert {"from": "layer4.1", "to": "global_pool", "skip": False} in data["edges"]
    assert out.read_text().startswith("<?xml") and "layer3.1" in out.read_text()
    assert main(["graph", "resnet18", "--expand", "layer9"]) == 2
    assert "the model has no layer 'layer9'; did you mean" in one_error_line(capsys)


@pytest.mark.slow
def test_looking_at_a_model_moves_no_batchnorm_statistics_and_keeps_each_modules_mode() -> None:
    """The graph's shape pass, the activation maps and the heatmap's layer search run the user's model: in train mode that would update
    BatchNorm running statistics (frozen ones included) and a plain ``model.train(flag)`` would undo a
    mixed mode (BatchNorm kept in eval inside a training model)."""
    from workbench.looking.activations import look
    from workbench.looking.heatmaps import class_heatmap

    model = timm.create_model("resnet18", pretrained=False, num_classes=3).train()
    model.bn1.eval()  # a mixed mode, as a BatchNorm policy leaves it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    model_graph(model, torch.randn(1, 3, 32, 32))
    look(model, "layer1", torch.randn(1, 3, 32, 32))
    class_heatmap(model, torch.randn(1, 3, 32, 32))  # its default layer is found by running the model
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a BatchNorm buffer moved"
    assert {name: m.training for name, m in model.named_modules()} == modes

