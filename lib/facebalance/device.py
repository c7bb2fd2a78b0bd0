"""The torch device and CPU threads a stage runs with (``base.device``, ``base.threads``).

Kept apart from the training code: every stage needs it, and a change to training must
not rerun stages that never train.
"""

from __future__ import annotations

import torch

from facebalance.errors import FacebalanceError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FacebalanceError(f"params: base.device = {name!r} but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FacebalanceError(
                f"params: base.device = {name!r} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FacebalanceError(
            f"params: base.device = {name!r} but MPS (Apple GPU) is not available here; "
            "use auto or cpu")
    return device


def set_threads(threads: int) -> None:
    """Set torch's CPU threads (0 keeps the default)."""
    if threads > 0:
        torch.set_num_threads(threads)
