"""The one place a command turns a device choice (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a
``torch.device``: each entry point calls :func:`resolve_device` once and passes the result down."""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(choice: str, field: str = "device"):
    """``auto``: CUDA when present, else the CPU. UserError (naming ``field``) for a device that
    cannot be had."""
    import torch

    from simulator.errors import UserError

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise UserError(f"{field}: unknown device {choice!r} (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{field}: cuda requested but no CUDA device is available")
    return device
