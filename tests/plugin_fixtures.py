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

    [workbench.model_sources]
    timmalias = fake_wb_thirdparty:TimmAliasSource
    timmnote = fake_wb_thirdparty:NotedAliasSource

    [workbench.datasets]
    broken = fake_wb_thirdparty_missing:Nothing
    fakeblobs = fake_wb_thirdparty:BlobsDataset
''')


@pytest.fixture
def third_party_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the fake distribution (found by importlib.metadata through sys.path) and reset the registry."""
    import importlib

    from workbench import plugins as plugin_mod

    site = tmp_path / "site"
    dist = site / "fake_wb_thirdparty-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "fake_wb_thirdparty.py").write_text(FAKE_MODULE)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-wb-thirdparty\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugin_mod, "_registry", None)
    return site
