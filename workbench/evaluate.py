"""How a trained model does on its validation set: confusion matrix, per-class accuracy, mistakes.

Qt-free; ``workbench evaluate`` (workbench/cli/evaluate.py) and the window's Results tab are its faces.
Images get the model's own evaluation preprocessing, exactly as the Trainer's validation does
(``build_transform(spec, train=False)``, grayscale for one-channel models), so the accuracy here is
the run's last validation accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.predict import Prediction, Predictor, TopClass, predict, to_probabilities, top_classes
from workbench.spec import ModelSpec

if TYPE_CHECKING:
    import torch.nn as nn
    from PIL import Image

    from workbench.data import Item
    from workbench.plan import FinetunePlan
    from workbench.workspace import Workspace

TOP = 5
Progress = Callable[[int, int], None]  # (images done, images in all)


class EvaluationCancelled(WorkbenchError):
    """A newer request replaced this evaluation (the window asked for another run)."""


@dataclass(frozen=True)
class ClassAccuracy:
    index: int
    name: str
    images: int  # validation images of this class
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.images if self.images else None


@dataclass(frozen=True)
class ConfusedPair:
    """``count`` validation images of class ``true`` were predicted as ``predicted``."""

    true: int
    predicted: int
    count: int
    share: float  # of the true class's validation images


@dataclass
class Mistake:
    """A misclassified validation image and the model's top classes for it."""

    index: int  # position in the validation set
    name: str
    true: int
    predicted: int
    top: list[TopClass]
    item: "Item" = field(repr=False, compare=False)

    @property
    def confidence(self) -> float:
        return self.top[0].prob if self.top else 0.0

    def to_json(self, classes: list[str]) -> dict[str, Any]:
        return {"index": self.index, "image": self.name, "true": classes[self.true],
                "predicted": classes[self.predicted], "top": [t.to_json() for t in self.top]}


@dataclass
class Evaluation:
    """The model's predictions on the validation set, summarised."""

    classes: list[str]
    matrix: list[list[int]]  # matrix[true][predicted]: image counts
    mistakes: list[Mistake]  # most confident first
    weights: str = ""  # which weights were evaluated, in words
    data: str = ""  # where the images came from
    notices: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    hint: str | None = None  # a pattern in the run's training curves worth knowing (workbench.hints)
    module: "nn.Module | None" = field(default=None, repr=False, compare=False)  # the model evaluated (eval mode)
    spec: ModelSpec | None = field(default=None, repr=False, compare=False)

    def classify(self, image: str | Path, top: int = TOP) -> Prediction:
        """Top classes of the evaluated model for an image file (the "try an image" of the Results tab)."""
        if self.module is None or self.spec is None:
            raise WorkbenchError("no model to classify with: evaluate a run first")
        return classify_image(self.module, self.spec, image, top, self.weights or "the model")

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.matrix)

    @property
    def correct(self) -> int:
        return sum(self.matrix[i][i] for i in range(len(self.classes)))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def per_class(self) -> list[ClassAccuracy]:
        return [ClassAccuracy(i, name, sum(self.matrix[i]), self.matrix[i][i]) for i, name in enumerate(self.classes)]

    def confused_pairs(self, limit: int = 10) -> list[ConfusedPair]:
        """The largest off-diagonal cells, most images first (ties: by class order)."""
        pairs = [ConfusedPair(t, p, n, n / sum(row)) for t, row in enumerate(self.matrix)
                 for p, n in enumerate(row) if p != t and n > 0]
        pairs.sort(key=lambda c: (-c.count, -c.share, c.true, c.predicted))
        return pairs[:limit]

    def to_json(self, pairs: int = 10) -> dict[str, Any]:
        return {
            "weights": self.weights, "data": self.data, "run_dir": str(self.run_dir) if self.run_dir else None,
            "classes": self.classes, "total": self.total, "correct": self.correct, "accuracy": self.accuracy,
            "confusion_matrix": self.matrix,
            "per_class": [{"class": c.name, "images": c.images, "correct": c.correct, "accuracy": c.accuracy}
                          for c in self.per_class()],
            "most_confused": [{"true": self.classes[c.true], "predicted": self.classes[c.predicted],
                               "count": c.count, "share": c.share} for c in self.confused_pairs(pairs)],
            "mistakes": [m.to_json(self.classes) for m in self.mistakes],
            "notices": self.notices, "hint": self.hint,
        }


def evaluate_items(module: "nn.Module", spec: ModelSpec, items: Sequence["Item"], classes: list[str], *,
                   batch_size: int = 64, device: str = "cpu", top: int = TOP, progress: Progress | None = None,
                   cancelled: Callable[[], bool] | None = None) -> Evaluation:
    """Classify every item (eval preprocessing of ``spec``) and tally it against its label."""
    import torch

    from workbench.data import build_transform

    items = [item for item in items if item.problem is None]  # known not to decode: reported when opened
    if not items:
        raise WorkbenchError("there are no validation images to evaluate on (set [data] val_split above 0, "
                             "or a val_path)")
    channels = spec.input_size[0]
    if channels not in (1, 3):
        raise WorkbenchError(f"the model takes {channels}-channel input; only 1 (grayscale) or 3 (RGB) "
                             "channel images can be evaluated")
    n = len(classes)
    transform = build_transform(spec, train=False, augment=False)
    matrix = [[0] * n for _ in range(n)]
    mistakes: list[Mistake] = []
    was_training = module.training
    home = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.eval()
    target = torch.device(device)
    module.to(target)
    try:
        for start in range(0, len(items), batch_size):
            if cancelled is not None and cancelled():
                raise EvaluationCancelled("evaluation cancelled")
            chunk = items[start:start + batch_size]
            batch = torch.stack([transform(_load(item, channels)) for item in chunk]).to(target)
            with torch.inference_mode():
                probs = to_probabilities(module(batch)).cpu()
            if probs.shape[1] != n:
                raise WorkbenchError(f"the model has {probs.shape[1]} outputs but the data has {n} classes "
                                     f"({_show_classes(classes)})")
            for offset, (item, row) in enumerate(zip(chunk, probs)):
                if not bool(torch.isfinite(row).all()):
                    raise WorkbenchError(f"the model gives non-finite scores for {item.name} (its weights contain "
                                         "NaN or infinite values, or overflow on this image)")
                predicted = int(row.argmax())
                matrix[item.label][predicted] += 1
                if predicted != item.label:
                    mistakes.append(Mistake(start + offset, item.name, item.label, predicted,
                                            top_classes(row, top, classes), item))
            if progress is not None:
                progress(min(start + batch_size, len(items)), len(items))
    finally:
        module.to(home)  # the caller's module stays where it was (classify_image feeds CPU tensors)
        module.train(was_training)
    mistakes.sort(key=lambda m: (-m.confidence, m.index))
    return Evaluation(list(classes), matrix, mistakes, module=module, spec=spec)


def _load(item: "Item", channels: int) -> Any:
    try:
        img = item.load()
    except WorkbenchError as exc:
        raise WorkbenchError(f"validation image {item.name} does not decode any more: {exc}") from None
    return img.convert("L") if channels == 1 else img


def _show_classes(classes: Sequence[str]) -> str:
    return ", ".join(classes) if len(classes) <= 8 else ", ".join(classes[:6]) + f", … {classes[-1]}"


def check_labels(model_labels: list[str] | None, num_outputs: int, data_classes: list[str], where: str) -> None:
    """The data's classes must be the ones the model was trained on, in the same order."""
    if model_labels and list(model_labels) != list(data_classes):
        if sorted(model_labels) == sorted(data_classes):
            raise WorkbenchError(f"{where} has the run's classes in another order ({_show_classes(data_classes)}); "
                                 "the model's outputs would be read as the wrong classes")
        added = [c for c in data_classes if c not in model_labels]
        gone = [c for c in model_labels if c not in data_classes]
        parts = ([f"new: {_show_classes(added)}"] if added else []) + ([f"missing: {_show_classes(gone)}"]
                                                                      if gone else [])
        raise WorkbenchError(f"the data no longer matches the run's labels: {where} has classes "
                             f"{_show_classes(data_classes)}, the run was trained on {_show_classes(model_labels)} "
                             f"({'; '.join(parts)})")
    if num_outputs != len(data_classes):
        raise WorkbenchError(f"the model has {num_outputs} outputs but {where} has {len(data_classes)} classes "
                             f"({_show_classes(data_classes)})")


def evaluate_plan_model(module: "nn.Module", spec: ModelSpec, plan: "FinetunePlan", *, device: str = "auto",
                        progress: Progress | None = None, cancelled: Callable[[], bool] | None = None,
                        data_fingerprint: str | None = None) -> Evaluation:
    """Evaluate ``module`` on the validation images of ``plan``'s data.

    ``data_fingerprint``: the one the run trained on; a different one today is said in the notices.
    """
    from workbench.data import LabelledImages, build_transform, fingerprint, open_images
    from workbench.training.devices import pick_device

    images = open_images(plan.data, plan.base_dir)
    where = images.source or plan.data.dataset
    if not isinstance(images, LabelledImages):
        raise WorkbenchError(f"{where} is a feature table: evaluation works on images only so far; the run's "
                             "validation accuracy per epoch is in its metrics.jsonl (`workbench runs`)")
    check_labels(spec.label_names, spec.num_classes, images.classes, where)
    evaluation = evaluate_items(module, spec, images.val, list(images.classes), batch_size=plan.train.batch_size,
                                device=str(pick_device(device)), progress=progress, cancelled=cancelled)
    evaluation.data = f"{where}: {len(images.val):,} validation images, {len(images.classes)} classes"
    evaluation.notices = list(images.problems)  # files skipped (e.g. no longer decode) and classes without val images
    if data_fingerprint:
        augment = plan.train.augment
        today = fingerprint(images, spec, build_transform(spec, train=True, augment=augment),
                            build_transform(spec, train=False, augment=False), augment)
        if today != data_fingerprint:
            evaluation.notices.append("the images, their split or the preprocessing changed since this run "
                                      "trained; these numbers are for the images as they are now")
    return evaluation


def evaluate_run(run_dir: str | Path, *, device: str = "auto", progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None) -> Evaluation:
    """Evaluate a run's weights (final, or its last checkpoint's) on the validation images of its recipe."""
    from workbench.run_catalog import read_run
    from workbench.run_loading import load_run_workspace

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    if not info.has_weights:
        raise WorkbenchError(f"run {run_dir.name} has no weights yet (no model.safetensors and no checkpoint): "
                             "it stopped before its first checkpoint; train it again")
    ws, _recipe = load_run_workspace(run_dir)
    ws.backbone.module.eval()  # this evaluation owns the model; "try an image" uses it as evaluated
    evaluation = evaluate_plan_model(ws.backbone.module, ws.backbone.spec, ws.plan, device=device, progress=progress,
                                     cancelled=cancelled, data_fingerprint=_trained_fingerprint(run_dir))
    evaluation.weights = info.weights_label()
    evaluation.run_dir = run_dir
    evaluation.hint = run_hint(run_dir, ws)
    difference = run_accuracy_note(evaluation, info.last_val_accuracy, ws.plan.train.amp, device)
    if difference:
        evaluation.notices.append(difference)
    return evaluation


def run_accuracy_note(evaluation: Evaluation, logged: float | None, amp: str, device: str) -> str | None:
    """Why the run's own last validation accuracy differs from this float32 evaluation, when it does.

    The Trainer validates under the run's autocast (bfloat16 on a CPU with AMX for ``amp = "auto"``),
    on trunk features it cached in that precision; the weights, and every export, are float32. Both
    figures are true: the log's is the model as trained, this one the model as saved and exported.
    """
    from workbench.training.devices import pick_amp, pick_device

    if logged is None or evaluation.accuracy is None or round(logged * evaluation.total) == evaluation.correct:
        return None
    try:
        dtype = pick_amp(amp, pick_device(device))
    except WorkbenchError:
        dtype = None
    why = (f"it validated in {str(dtype).removeprefix('torch.')} mixed precision ([train] amp = {amp!r}), "
           "this evaluation in float32 as the weights are saved and exported; amp = \"off\" makes them equal"
           if dtype is not None else "the weights evaluated here were saved after its last validation (a run stopped "
           "mid-epoch keeps the weights of its last batch)")
    return (f"The run's log says {logged:.1%} ({round(logged * evaluation.total)} of {evaluation.total}): {why}")


def run_hint(run_dir: Path, ws: "Workspace") -> str | None:
    """The training-log hint for a run's recorded epochs (validation stuck at chance…), if any."""
    from workbench.hints import epoch_hint, hint_context
    from workbench.run_catalog import read_metrics
    from workbench.run_folder import RunDir

    epochs = [r for r in read_metrics(RunDir(run_dir).metrics) if r.get("type") == "epoch"]
    return epoch_hint(epochs, ws.backbone.spec.num_classes, **hint_context(ws))


def _trained_fingerprint(run_dir: Path) -> str | None:
    from workbench.run_folder import RunDir
    from workbench.training.checkpoint_file import load_checkpoint

    path = RunDir(run_dir).checkpoint
    if not path.is_file():
        return None
    try:
        value = load_checkpoint(path).data_fingerprint
    except WorkbenchError:
        return None
    return str(value) if value else None


def latest_run_with_weights(project: Path) -> Path:
    """The newest run beside a project file (or in a folder of runs) that has weights."""
    from workbench.run_catalog import COMPARE_PREFIX, list_runs

    # A comparison's strategy runs are listed with the project's runs, but "the newest run" means a trained one.
    runs = [r for r in list_runs(project) if r.has_weights and r.status != "running"
            and not r.path.parent.name.startswith(COMPARE_PREFIX)]
    if not runs:
        raise WorkbenchError(f"{project} has no trained runs with weights yet; train first "
                             "(`workbench train`), or name a run folder")
    return max(runs, key=lambda r: (r.started, r.name)).path


def resolve_target(target: str | Path) -> Path:
    """A run folder as given, or the latest run of a project file / folder of runs."""
    from workbench.run_catalog import is_run_dir

    path = Path(target).expanduser()
    if not path.exists():
        raise WorkbenchError(f"no run folder or project at {target}")
    if is_run_dir(path):
        return path
    if (path.is_file() and path.suffix == ".toml") or path.is_dir():
        return latest_run_with_weights(path)
    raise WorkbenchError(f"{target} is neither a run folder nor a project .toml")


def thumbnail(item: "Item", size: int) -> "Image.Image":
    """A square ``size``-pixel RGB thumbnail; tiny images (8×8 digits) are enlarged with hard pixel edges."""
    from PIL import Image, ImageOps

    img = item.load()
    smooth = min(img.size) >= size
    return ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST)


def classify_image(module: "nn.Module", spec: ModelSpec, image: str | Path, top: int = TOP,
                   weights: str = "the model") -> Prediction:
    """Top-``top`` classes for one image file (``workbench predict``'s preprocessing and checks), in eval mode."""
    was_training = module.training
    module.eval()  # BatchNorm and dropout as at validation (and one image is no batch to normalise)
    try:
        return predict(Predictor(module, spec, weights), [str(image)], top)[0]
    finally:
        module.train(was_training)


def format_text(evaluation: Evaluation, pairs: int = 10, max_matrix: int = 30) -> str:
    """Per-class accuracy, the confusion matrix (up to ``max_matrix`` classes) and the most-confused pairs."""
    ev = evaluation
    lines = []
    if ev.weights:
        lines.append(f"weights: {ev.weights}")
    if ev.data:
        lines.append(f"data: {ev.data}")
    accuracy = f"{ev.accuracy:.1%}" if ev.accuracy is not None else "—"
    lines += [f"accuracy: {accuracy} ({ev.correct:,} of {ev.total:,}; chance {1 / len(ev.classes):.1%})", ""]
    width = max(len(c) for c in ev.classes)
    lines.append("per-class accuracy:")
    for c in ev.per_class():
        acc = f"{c.accuracy:6.1%}" if c.accuracy is not None else "     —"
        lines.append(f"  {c.name.ljust(width)}  {acc}  ({c.correct:,} of {c.images:,})")
    lines.append("")
    n = len(ev.classes)
    if n <= max_matrix:
        lines.append("confusion matrix (rows: true class, columns: predicted):")
        cell = max(max(len(str(v)) for row in ev.matrix for v in row), *(len(c) for c in ev.classes[:n])) + 1
        cell = min(cell, 8)
        lines.append("  " + " " * width + "".join(c[:cell - 1].rjust(cell) for c in ev.classes))
        for name, row in zip(ev.classes, ev.matrix):
            lines.append("  " + name.ljust(width) + "".join(str(v).rjust(cell) for v in row))
    else:
        lines.append(f"confusion matrix: {n}×{n} (too wide to print; --json has it)")
    lines.append("")
    confused = ev.confused_pairs(pairs)
    lines.append("most confused (true → predicted):" if confused else "most confused: none (no mistakes)")
    for pair in confused:
        lines.append(f"  {ev.classes[pair.true]} → {ev.classes[pair.predicted]}: {pair.count:,} "
                     f"({pair.share:.1%} of {ev.classes[pair.true]})")
    for notice in ev.notices:
        lines.append(f"note: {notice}")
    if ev.hint:
        lines.append(f"hint: {ev.hint}")
    return "\n".join(lines)
