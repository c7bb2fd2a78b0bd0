"""The training loops' compute precision (``base.precision``) and their host-to-device copies.

``fp32`` (the default) runs every op in float32: the committed results were made so and a
rerun reproduces them bit for bit. ``bf16`` and ``fp16`` autocast the forward pass only
(convolutions and matrix products in 16 bits, the ops torch's autocast keeps in float32
stay there); the loss, the gradients of the float32 parameters and the optimizer step stay
float32. fp16's narrow exponent flushes small gradients to zero, so it runs with a gradient
scaler, and only on CUDA (CPU autocast has no fast fp16). ``auto`` picks bf16 where the
hardware computes it natively (a CUDA GPU with bf16, a CPU with AMX tiles) and fp32
elsewhere; stages record what it picked (:func:`precision_record`).

On AVX2-only CPUs bf16 is emulated and slower than fp32 (see docs/timings.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from facebalance.config import FP16_NEEDS_CUDA, PRECISIONS
from facebalance.errors import FacebalanceError

#: The torch dtype of each resolved precision.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_amx(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (flag ``amx_bf16``).

    Read from ``cpuinfo`` (Linux); where there is none, torch's own check of the tiles.
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        check = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(check is not None and check())
    for line in text.splitlines():
        if line.startswith("flags"):
            return "amx_bf16" in line.split()
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses: ``name`` itself, or what ``auto`` picks.

    Parameters
    ----------
    name
        ``fp32``, ``bf16``, ``fp16`` or ``auto`` (``base.precision``).
    device
        The device the run trains on.

    Returns
    -------
    str
        ``fp32``, ``bf16`` or ``fp16``.

    Raises
    ------
    FacebalanceError
        For an unknown name, fp16 off CUDA, bf16 on a GPU without it, or 16 bits on a
        device other than CPU and CUDA.
    """
    if name not in PRECISIONS:
        raise FacebalanceError(
            f"params: base.precision = {name!r} is invalid; valid values: "
            f"{', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        native = cuda_bf16 or (device.type == "cpu" and cpu_has_amx())
        return "bf16" if native else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise FacebalanceError(FP16_NEEDS_CUDA.format(device=str(device)))
    if name == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise FacebalanceError(
            f"params: base.precision = 'bf16' but {torch.cuda.get_device_name(device)} has no "
            "bf16; use fp16 or fp32")
    if name != "fp32" and device.type not in ("cpu", "cuda"):
        raise FacebalanceError(
            f"params: base.precision = {name!r} runs on cpu or cuda, but the device is "
            f"{str(device)!r}; use fp32")
    return name


def precision_record(setting: str, used: str) -> dict[str, str]:
    """What a checkpoint's meta and a stage's metrics say about the precision.

    Nothing for the default fp32, so its outputs stay as they were before the setting
    existed; otherwise the precision used and the setting that chose it (``auto`` says so).
    """
    if setting == used == "fp32":
        return {}
    return {"precision": used, "precision_setting": setting}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``precision``'s dtype on ``device``; for fp32 a context that does nothing
    (the fp32 path runs exactly the ops it ran before precision existed)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's gradient scaler (loss scaled up so small gradients survive, steps with
    overflowed gradients skipped); None for fp32 and bf16, whose exponent is fp32's."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def backward_step(loss: torch.Tensor, opt: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler | None) -> None:
    """Backpropagate ``loss`` and step ``opt``, through ``scaler`` when there is one."""
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)  # unscales first; skips the step when a gradient overflowed
    scaler.update()


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``. A host tensor bound for CUDA goes through pinned memory without
    blocking, so the host queues the next kernels while the copy runs (a plain copy from
    pageable memory waits for the GPU to finish the previous step)."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
