"""Fine-tuning strategies for ``workbench compare``: one registered object per strategy.

Each strategy has a ``name``, its argument ``syntax`` (``freeze:N``, ``lora[:RANK]``), a one-line
``description`` and two methods: ``parse(arg)`` (the text after the colon, "" when none; raises
ValueError with the reason) and ``apply(plan, tree, arg)``, which edits a copy of the project's plan.
``workbench compare --help``, the Compare tab's choices and the docs are built from this registry.
A third-party package adds one through the ``workbench.strategies`` entry-point group, like any plugin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from workbench.plugins import CompareStrategy

if TYPE_CHECKING:
    from workbench.layer_tree import LayerTree
    from workbench.plan import FinetunePlan

DEFAULT_FACTOR = 1 / 2.6  # ULMFiT's discriminative factor
DEFAULT_RANK = 8
LORA_MAX_SHARE = 0.1  # the lora strategy adapts a layer when its adapter has <= a tenth of the layer's weight
DEFAULT_DECAY = 0.75  # timm train.py / BEiT's --layer-decay for fine-tuning


def registered() -> dict[str, CompareStrategy]:
    """Every strategy by name: the built-ins, then installed plugins (a plugin never replaces a built-in)."""
    from workbench.plugins import STRATEGIES, registry

    out: dict[str, CompareStrategy] = {s.name: s for s in BUILTIN}
    for name, plugin in registry().plugins(STRATEGIES).items():
        out.setdefault(name, plugin)
    return out


def help_lines() -> list[str]:
    """``syntax: description`` for every strategy, as the CLI help and the docs list them."""
    return [f"{s.syntax}: {s.description}" for s in registered().values()]


def eval_fraction(text: str) -> float:
    """``0.385`` or ``1/2.6``."""
    if re.fullmatch(r"\s*[0-9.]+\s*/\s*[0-9.]+\s*", text):  # ASCII only: \d and isdigit() take "²" and "٣"
        num, den = text.split("/")
        return float(num) / float(den)
    if not re.fullmatch(r"\s*[0-9.eE+-]+\s*", text):
        raise ValueError(text)
    return float(text)


def whole_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit()`` also accepts "²", which ``int()`` refuses, and "٣", which it reads as 3)."""
    return re.fullmatch(r"[0-9]+", text) is not None


def uniform_groups(plan: FinetunePlan, tree: LayerTree) -> None:
    """The project's groups (or the model's stages) at the [train] LR: strategies compare freezing, not LRs."""
    from workbench.groups import default_groups
    from workbench.plan import GroupConfig

    plan.groups = [GroupConfig(g.name, list(g.modules), None, g.weight_decay) for g in plan.groups or default_groups(tree)]


def _number(arg: str, default: float, name: str, example: str) -> float:
    """A number in (0, 1] (``0.385`` or ``1/2.6``); ValueError says which rule it breaks."""
    if not arg:
        return default
    try:
        value = eval_fraction(arg)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name} must be a number such as {example}, not {arg!r}") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], not {value:g}")
    return value


@dataclass
class _Builtin:
    name: str
    syntax: str
    description: str

    def parse(self, arg: str) -> Any:
        if arg:
            raise ValueError(f"{self.name} takes no argument")

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        raise NotImplementedError


class Probe(_Builtin):
    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        from workbench.freezing import linear_probe

        linear_probe(plan, tree)
        uniform_groups(plan, tree)


class FreezeN(_Builtin):
    def parse(self, arg: str) -> int:
        if not whole_number(arg):
            raise ValueError(f"{self.syntax} needs a whole number of stages")
        return int(arg)

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        from workbench.freezing import freeze_first_stages

        freeze_first_stages(plan, tree, int(arg))
        uniform_groups(plan, tree)


class Full(_Builtin):
    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        from workbench.freezing import full_finetune

        full_finetune(plan)
        uniform_groups(plan, tree)
        if self.name == "full-lowlr":
            plan.train.lr /= 10


class Discriminative(_Builtin):
    def parse(self, arg: str) -> float:
        return _number(arg, DEFAULT_FACTOR, "the discriminative factor", "0.385 or 1/2.6")

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        from workbench.freezing import full_finetune
        from workbench.groups import discriminative

        full_finetune(plan)
        uniform_groups(plan, tree)
        plan.groups = discriminative(plan.groups, plan.train.lr, float(arg))


class Gradual(_Builtin):
    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        """Head first; then one more group (from the top down) at the start of each following epoch."""
        from workbench.plan import UnfreezeStep

        uniform_groups(plan, tree)
        head, body = plan.groups[-1], plan.groups[:-1]
        plan.freeze.frozen[:] = [""]
        plan.freeze.unfrozen[:] = list(head.modules)
        plan.unfreeze = [UnfreezeStep(epoch, [g.name]) for epoch, g in
                         enumerate(reversed(body), start=1) if epoch < plan.train.epochs]


class Lora(_Builtin):
    def parse(self, arg: str) -> int:
        if not arg:
            return DEFAULT_RANK
        if not whole_number(arg) or int(arg) < 1:
            raise ValueError(f"{self.syntax} needs a whole rank >= 1, not {arg!r}")
        return int(arg)

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        """The head trains; LoRA on the project's [adapters] modules, else on every layer outside the head
        where a rank-RANK update is low-rank (its adapter has at most LORA_MAX_SHARE of the layer's weight)."""
        from workbench.freezing import linear_probe
        from workbench.plan import AdapterConfig

        linear_probe(plan, tree)
        plan.groups = []  # the stages of the adapted model (its parameter names differ)
        if plan.adapters is not None:
            plan.adapters = replace(plan.adapters, modules=list(plan.adapters.modules), rank=int(arg))
        else:
            head = "|".join(re.escape(p) for p in tree.classifier_paths)
            plan.adapters = AdapterConfig(modules=[f"re:^(?!(?:{head})(?:\\.|$)).+"], rank=int(arg),
                                          max_share=LORA_MAX_SHARE)


class BitFit(_Builtin):
    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        from workbench.freezing import bitfit

        bitfit(plan, tree)
        uniform_groups(plan, tree)


class LayerDecay(_Builtin):
    def parse(self, arg: str) -> float:
        return _number(arg, DEFAULT_DECAY, "the layer decay", "0.75")

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        from workbench.freezing import full_finetune

        full_finetune(plan)
        plan.groups = []  # one group per layer, each at lr × decay^(layers from the head)
        plan.train.layer_decay = float(arg)


class LinearProbeThenFinetune(_Builtin):
    def parse(self, arg: str) -> int | None:
        if not arg:
            return None
        if not whole_number(arg) or int(arg) < 1:
            raise ValueError(f"{self.syntax} needs a whole number of probe epochs >= 1, not {arg!r}")
        return int(arg)

    def apply(self, plan: FinetunePlan, tree: LayerTree, arg: Any) -> None:
        """Probe (cached trunk) for N epochs (default half the run), then everything trains at LR / 10 (Kumar et al.:
        the fine-tune phase's LR is the same small one for the probed head and the body)."""
        from workbench.freezing import linear_probe
        from workbench.plan import UnfreezeStep

        epochs = plan.train.epochs
        probe = int(arg) if arg is not None else max(1, epochs // 2)
        if probe >= epochs:
            raise ValueError(f"probes for {probe} epoch(s) of {epochs}: nothing would be fine-tuned (use more "
                             "--epochs or fewer probe epochs)")
        linear_probe(plan, tree)
        uniform_groups(plan, tree)
        body = plan.groups[:-1]
        for group in body:
            group.lr = plan.train.lr / 10  # what the groups table shows; the step below sets it, and the head's
        plan.unfreeze = [UnfreezeStep(probe, [g.name for g in body], lr=plan.train.lr / 10)]


BUILTIN: tuple[CompareStrategy, ...] = (
    Probe("probe", "probe", "only the head trains (a linear probe; the frozen trunk is cached)"),
    FreezeN("freeze", "freeze:N", "the stem and the first N stages frozen, the rest trains"),
    Full("full", "full", "everything trains at the project's LR"),
    Full("full-lowlr", "full-lowlr", "everything trains at a tenth of the project's LR"),
    Discriminative("discriminative", "discriminative[:FACTOR]",
                   "everything trains; each earlier stage at FACTOR × the next one's LR (default 1/2.6)"),
    Gradual("gradual", "gradual", "head first, then one more stage from the top each epoch (ULMFiT)"),
    Lora("lora", "lora[:RANK]", "LoRA adapters (peft) on the layers outside the head where the adapter has at most "
         f"{LORA_MAX_SHARE:.0%} of the layer's weight; the head trains too (default rank {DEFAULT_RANK})"),
    BitFit("bitfit", "bitfit", "only biases, normalisation scales and the head train (BitFit)"),
    LayerDecay("llrd", "llrd[:DECAY]", "everything trains; each layer at LR × DECAY^(layers from the head) (default 0.75)"),
    LinearProbeThenFinetune("lp-ft", "lp-ft[:EPOCHS]",
                            "probe for EPOCHS (default half the run), then everything trains at LR / 10, the head too"),
)
