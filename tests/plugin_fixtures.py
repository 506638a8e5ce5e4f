"""A fake third-party distribution: a module plus a dist-info with entry_points.txt, put on sys.path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

FAKE_MODULE = textwrap.dedent('''
    """A third-party plugin package, as another distribution would ship it."""
    from pathlib import Path

    from workbench.export import ExportResult


    class NpzExporter:
        name = "fakenpz"
        description = "NumPy archive of every tensor (third-party test exporter)"
        output_kind = "file"
        suffix = ".npz"

        def export(self, module, spec, out, recipe_toml=None, tolerance=None):
            import numpy as np

            arrays = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
            np.savez(out, **arrays)
            return ExportResult("fakenpz", [Path(out)], None, f"wrote {len(arrays)} arrays")


    def _onnx_alias():
        from workbench_plugins.onnx_exporter import OnnxExporter

        class OnnxAliasExporter(OnnxExporter):
            """A third-party exporter that writes ONNX and says so: the INT8/fp16 variants apply to it too."""
            name = "onnxalias"
            description = "ONNX through a third-party exporter (test)"

        return OnnxAliasExporter


    OnnxAliasExporter = _onnx_alias()


    class TimmAliasSource:
        """Opens a '.timmname' text file holding a timm model name."""
        name = "timmalias"
        suffixes = (".timmname",)

        def can_load(self, request):
            return request.path.suffix.lower() == ".timmname"

        def load(self, request):
            from dataclasses import replace

            from workbench.sources import load_backbone

            name = Path(request.ref).read_text().strip()
            return load_backbone(replace(request, ref=name, source="timm"))


    class NotedAliasSource(TimmAliasSource):
        """Like TimmAliasSource for '.timmnote' files, and it reports what it did in its own words."""
        name = "timmnote"
        suffixes = (".timmnote",)

        def can_load(self, request):
            return request.path.suffix.lower() == ".timmnote"

        def load(self, request):
            backbone = super().load(request)
            backbone.source = self.name
            backbone.report = {"alias_file": Path(request.ref).name, "resolved_to": backbone.spec.architecture}
            return backbone

        def describe_report(self, report):
            from workbench.plugins import SourceReportText

            return SourceReportText("Alias file", [f"{report['alias_file']} names {report['resolved_to']}"],
                                    [f"resolved to {report['resolved_to']}"])


    class BlobsDataset:
        """Three Gaussian blobs in 4 features: a dataset that needs no file."""
        name = "fakeblobs"
        title = "Blobs (third-party test dataset)"
        path_kind = "none"

        def open(self, config, base_dir=None):
            import numpy as np

            from workbench.tables import LabelledTable

            rng = np.random.default_rng(0)
            y = np.repeat(np.arange(3), 20)
            x = (rng.normal(size=(60, 4)) + y[:, None] * 3).astype(np.float32)
            return LabelledTable(["a", "b", "c"], x[::2], y[::2], x[1::2], y[1::2], source="blobs")
''')

ENTRY_POINTS = textwrap.dedent('''
    [workbench.exporters]
    fakenpz = fake_wb_thirdparty:NpzExporter
    onnxalias = fake_wb_thirdparty:OnnxAliasExporter

    [workbench.model_sources]
    timmalias = fake_wb_thirdparty:TimmAliasSource
    timmnote = fake_wb_thirdparty:NotedAliasSource

    [workbench.datasets]
    broken = fake_wb_thirdparty_missing:Nothing
    fakeblobs = fake_wb_thirdparty:BlobsDataset
''')


FAKENET_MODULE = textwrap.dedent('''
    """A third-party model source for a file format the core has never heard of: '.fakenet' (JSON)."""
    import json
    from pathlib import Path

    import torch
    import torch.nn as nn

    from workbench.backbone import Backbone
    from workbench.errors import ModelLoadError
    from workbench.spec import ModelSpec


    class FakeNet(nn.Module):
        def __init__(self, widths, classes):
            super().__init__()
            self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
            self.bn = nn.BatchNorm2d(widths[0])
            self.block = nn.Conv2d(widths[0], widths[1], 3, stride=2, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(widths[1], classes)

        def forward(self, x):
            x = torch.relu(self.block(torch.relu(self.bn(self.stem(x)))))
            return self.fc(torch.flatten(self.pool(x), 1))


    class FakeNetSource:
        """Builds the network a '.fakenet' file describes: {"widths": [a, b], "classes": n, "seed": s}."""
        name = "fakenet"
        title = "FakeNet models"
        suffixes = (".fakenet",)
        loads = 0  # how many models it built (the test sees rebuilds go through it)

        def can_load(self, request):
            return request.path.suffix.lower() == ".fakenet"

        def load(self, request):
            try:
                described = json.loads(Path(request.ref).read_text())
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"{request.ref}: not a FakeNet description ({exc})") from None
            torch.manual_seed(described["seed"])
            model = FakeNet(described["widths"], described["classes"])
            type(self).loads += 1
            spec = ModelSpec(f"fakenet:{Path(request.ref).stem}", described["classes"],
                             input_size=tuple(request.input_size or (3, 32, 32)), mean=(0.5,) * 3, std=(0.25,) * 3,
                             classifier="fc")
            return Backbone(model, spec, self.name, request.ref, report={"widths": described["widths"]})
''')

FAKENET_ENTRY_POINTS = "[workbench.model_sources]\nfakenet = fake_wb_fakenet:FakeNetSource\n"


def install_distribution(site: Path, name: str, module: str, entry_points: str,
                         monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write ``name`` (one module plus a dist-info with entry_points.txt) into ``site``, put it on sys.path and
    reset the registry: importlib.metadata finds it exactly as it finds a pip-installed distribution."""
    import importlib

    from workbench import plugins as plugin_mod

    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / f"{name}.py").write_text(module)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugin_mod, "_registry", None)
    return site


@pytest.fixture
def third_party_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the fake distribution (found by importlib.metadata through sys.path) and reset the registry."""
    return install_distribution(tmp_path / "site", "fake_wb_thirdparty", FAKE_MODULE, ENTRY_POINTS, monkeypatch)


@pytest.fixture
def fakenet_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install a third-party distribution whose model source opens '.fakenet' files."""
    return install_distribution(tmp_path / "fakenet_site", "fake_wb_fakenet", FAKENET_MODULE,
                                FAKENET_ENTRY_POINTS, monkeypatch)


def write_fakenet(path: Path, widths: tuple[int, int] = (6, 10), classes: int = 4, seed: int = 7) -> Path:
    """A '.fakenet' file, the format only the fakenet plugin reads."""
    import json

    path.write_text(json.dumps({"widths": list(widths), "classes": classes, "seed": seed}))
    return path
