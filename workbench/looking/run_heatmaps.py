"""Where a run's model looks, before and after fine-tuning: class heatmaps of its starting and trained model.

``RunHeatmaps`` loads the two models of one run folder once (the first request) and answers any number of
images after that; the Results tab asks it for each misclassified image clicked, for the class the trained
model predicted and the true one. Loading and drawing are thread-safe (one lock), so a background call
can serve the window.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.looking.heatmaps import Heatmap


@dataclass
class BeforeAfter:
    """Heatmaps of one image for one class: (title, heatmap) per model, starting model first."""

    class_index: int
    panels: list[tuple[str, "Heatmap"]]
    pixels: Any  # the model's input crop, H×W×3 uint8

    def png(self) -> bytes:
        from workbench.looking.pictures import heatmap_figure, png_bytes

        return png_bytes(heatmap_figure(self.panels, self.pixels))


class RunHeatmaps:
    def __init__(self, run_dir: str | Path, method: str = "gradcam") -> None:
        self.run_dir = Path(run_dir)
        self.method = method
        self._lock = threading.Lock()
        self._models: list[tuple[str, Any]] | None = None  # (title, a model with .module and .spec)

    def models(self) -> list[tuple[str, Any]]:
        """("starting model", …), ("trained model", …): loaded on first use, WorkbenchError if the run has no
        record of its start."""
        with self._lock:
            if self._models is None:
                from workbench.looking.starting_model import starting_predictor
                from workbench.run_loading import load_run

                self._models = [("starting model", starting_predictor(self.run_dir)),
                                ("trained model", load_run(self.run_dir))]
            return self._models

    def for_image(self, image: Any, class_index: int | None = None, layer: str | None = None) -> BeforeAfter:
        """Both models' heatmaps of ``image`` (a PIL image or a file) for ``class_index`` (None: the class the
        trained model predicts; the starting model is shown for that same class)."""
        from workbench.looking.heatmaps import class_heatmap
        from workbench.looking.inputs import feed

        (start_title, start), (trained_title, trained) = self.models()
        with self._lock:
            fed = feed(image, trained.spec)
            after = class_heatmap(trained.module, fed.tensor, layer=layer, class_index=class_index,
                                  method=self.method, label_names=trained.spec.label_names)
            before = class_heatmap(start.module, fed.tensor, layer=layer, class_index=after.class_index,
                                   method=self.method, label_names=start.spec.label_names)
        return BeforeAfter(after.class_index, [(start_title, before), (trained_title, after)], fed.pixels)
