"""Which devices exist, which one ``auto`` means, and which mixed precision fits it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


def available_devices() -> list[tuple[str, str]]:
    """(id, description) for every usable device; CPU is always last."""
    import torch

    found: list[tuple[str, str]] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            found.append((f"cuda:{i}", f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append(("mps", "Apple GPU (MPS)"))
    found.append(("cpu", f"CPU ({torch.get_num_threads()} threads)"))
    return found


def pick_device(name: str) -> "torch.device":
    """``auto`` → CUDA, then MPS, then CPU; anything else must exist here."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device(available_devices()[0][0])
    ids = [d for d, _ in available_devices()]
    wanted = "cuda:0" if name == "cuda" else name
    if wanted not in ids:
        raise WorkbenchError(f"device {name!r} is not available here (available: {', '.join(ids)})")
    return torch.device(wanted)


def check_compile(device: "torch.device") -> None:
    """``[train] compile = true`` can work on ``device``, or one WorkbenchError saying what is missing.

    torch.compile's inductor builds C++ kernels on the CPU and Triton kernels on CUDA; without a compiler
    (the desktop bundle, a slim container) the first compiled step ends in an InductorError traceback.
    """
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as exc:  # InvalidCxxCompiler, or an inductor without this helper
            raise WorkbenchError(f"[train] compile = true needs a C++ compiler on the CPU (torch.compile builds C++ "
                                 f"kernels there) and none works here ({' '.join(str(exc).split())[:160]}); install "
                                 "g++ or clang (or point CXX at one), or set compile = false") from None
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise WorkbenchError("[train] compile = true needs Triton on CUDA (torch.compile builds Triton kernels) "
                                 "and it is not installed; pip install triton, or set compile = false")


def cpu_native_bf16() -> str:
    """The CPU feature that computes bfloat16 natively ("AMX" or "AVX512-BF16"), or "" when there is none.

    oneDNN also runs bfloat16 on CPUs without these, emulated and 2-3x slower than float32
    (measured in benchmarks/RESULTS.md §2), so only these two count.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return ""


def pick_amp(setting: str, device: "torch.device") -> "torch.dtype | None":
    """Mixed-precision dtype, or None for float32.

    ``auto``: bf16 on CUDA when supported, else fp16; bf16 on a CPU that computes it natively
    (``cpu_native_bf16``); float32 on other CPUs and on MPS.
    """
    import torch

    setting = (setting or "auto").lower()
    if setting in ("off", "none", "false", "fp32"):
        return None
    if setting not in ("auto", "bf16", "fp16"):
        raise WorkbenchError(f"[train] amp must be auto, bf16, fp16 or off, not {setting!r}")
    if device.type != "cuda":
        if setting == "auto":
            return torch.bfloat16 if device.type == "cpu" and cpu_native_bf16() else None
        if setting == "bf16" and device.type == "cpu":
            return torch.bfloat16
        raise WorkbenchError(f"mixed precision {setting} needs a CUDA device (training on {device.type})")
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def bf16_faulty_convs(model: "nn.Module", input_size: tuple[int, ...]) -> list[str]:
    """Convolutions whose bfloat16 weight gradient this CPU's oneDNN computes wrongly at this input size.

    Measured with torch 2.14 on an AMX CPU (benchmarks/RESULTS.md §2): a strided convolution with a kernel
    wider than 1 on a 1-pixel-wide feature map (a 3×3 stride-2 conv on 1×1, as resnet10t's layer4 at 16 px)
    gets a garbage weight gradient in 35-40 of 40 backward passes (NaN or > 5% off float32); bigger maps,
    stride 1 and 1×1 kernels are exact to bf16 rounding. One batch-1 float32 forward finds them.
    """
    import torch
    import torch.nn as nn

    candidates = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
                  and any(s > 1 and k > 1 for s, k in zip(m.stride, m.kernel_size))}
    if not candidates or len(input_size) != 3:
        return []
    found: list[str] = []

    def hook(name: str, module: nn.Conv2d) -> Any:
        def check(_module: nn.Module, args: tuple[Any, ...]) -> None:
            h, w = args[0].shape[-2:]
            (kh, kw), (sh, sw) = module.kernel_size, module.stride
            if (h == 1 and sh > 1 and kh > 1) or (w == 1 and sw > 1 and kw > 1):
                found.append(name)
        return check

    handles = [m.register_forward_pre_hook(hook(n, m)) for n, m in candidates.items()]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    except Exception:  # a model that cannot run at batch 1 here: the run itself will say why
        return []
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return found


def describe_precision(setting: str, device: "torch.device", dtype: "torch.dtype | None", why: str = "") -> str:
    """What the run computes in and why, for the run's first line: the user sees what ``auto`` chose."""
    setting = (setting or "auto").lower()
    if why:
        return f"{'float32' if dtype is None else str(dtype).split('.')[-1] + ' mixed precision'} ({why})"
    if dtype is None:
        return "float32 (amp = auto: this CPU has no native bfloat16)" if setting == "auto" and \
            device.type == "cpu" else "float32"
    name = str(dtype).split(".")[-1]
    if setting != "auto":
        return f"{name} mixed precision"
    if device.type != "cpu":
        return f"{name} mixed precision (amp = auto)"
    return (f"{name} mixed precision (amp = auto: this CPU computes bfloat16 natively with {cpu_native_bf16()}; "
            'amp = "off" for float32)')
