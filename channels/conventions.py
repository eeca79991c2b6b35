"""Link-level conventions shared by every block in ``channels`` (and the rest of the simulator).

- A channel use is one complex symbol. After :func:`normalize_power` the average transmit energy
  per complex symbol is ``Es = 1``.
- ``SNR = Es / N0`` in dB at the API boundary, linear inside. ``N0`` (Sionna's ``no``) is the
  complex noise power: each real dimension carries ``N0 / 2``.
- Fading coefficients have ``E|h|^2 = 1`` unless a model states path loss explicitly (UMi/UMa).
- Tensors are batch-first; multi-user tensors are ``[batch, num_users, ...]``.

These helpers are plain torch so that they are cheap to import and differentiable.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "snr_db_to_no",
    "no_to_snr_db",
    "normalize_power",
    "real_to_complex",
    "complex_to_real",
    "average_power",
    "CHANNEL_DEVICE",
    "sionna_on_cpu",
]

CHANNEL_DEVICE = "cpu"


def sionna_on_cpu():
    """Sionna's global ``config``, its default device set to :data:`CHANNEL_DEVICE` (the CPU).

    Sionna puts its blocks on ``cuda:0`` whenever a GPU is present. This package's channels run on
    the CPU instead, wherever the MLLM runs: their draws come from CPU generators (the same numbers
    on every machine for a seed), and they cost little next to the model (``python -m simulator
    bench``). Called before any Sionna block of this package is built.
    """
    from sionna.phy import config

    config.device = CHANNEL_DEVICE
    return config


def snr_db_to_no(snr_db: float | torch.Tensor, es: float = 1.0) -> torch.Tensor:
    """Complex noise power ``N0 = Es / 10^(SNR/10)``.

    Args:
        snr_db: SNR = Es/N0 in dB, a float or a float tensor of any shape. ``+inf`` gives ``N0 = 0``.
        es: average symbol energy (1 after :func:`normalize_power`).

    Returns:
        ``N0`` as float32 tensor of the same shape as ``snr_db`` (linear, not dB).
    """
    snr_db = torch.as_tensor(snr_db, dtype=torch.float32)
    return es * torch.pow(torch.tensor(10.0), -snr_db / 10.0)


def no_to_snr_db(no: float | torch.Tensor, es: float = 1.0) -> torch.Tensor:
    """Inverse of :func:`snr_db_to_no`: SNR in dB from the complex noise power ``N0`` (linear)."""
    no = torch.as_tensor(no, dtype=torch.float32)
    return 10.0 * torch.log10(es / no)


def average_power(x: torch.Tensor, dim: int | tuple[int, ...] = -1) -> torch.Tensor:
    """Mean of ``|x|^2`` over ``dim`` (complex or real ``x``; for real ``x`` this is per real)."""
    return (x.abs() ** 2).mean(dim=dim)


def normalize_power(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row of complex symbols to average energy 1 per complex symbol.

    Args:
        x: ``[..., num_symbols]`` complex. Each leading index (one user's block, one token, ...)
            is normalised on its own, so the constraint holds per transmission.
        mask: optional ``[..., num_symbols]`` bool; only ``True`` symbols count and are sent
            (padding stays zero).

    Returns:
        ``[..., num_symbols]`` complex with ``mean(|x|^2) = 1`` over the (masked) last axis.
    """
    power = x.abs() ** 2
    if mask is None:
        mean = power.mean(dim=-1, keepdim=True)
        return x / torch.sqrt(mean + eps)
    mask = mask.to(torch.bool)
    count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
    mean = (power * mask).sum(dim=-1, keepdim=True) / count
    return torch.where(mask, x / torch.sqrt(mean + eps), torch.zeros_like(x))


def real_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Pair consecutive reals into complex symbols: ``[..., 2c]`` float -> ``[..., c]`` complex.

    Element ``2i`` is the real part and ``2i+1`` the imaginary part of symbol ``i``.
    """
    if x.shape[-1] % 2:
        raise ValueError(f"real_to_complex needs an even last dimension, got {x.shape[-1]}")
    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    return torch.complex(pairs[..., 0].contiguous(), pairs[..., 1].contiguous())


def complex_to_real(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`real_to_complex`: ``[..., c]`` complex -> ``[..., 2c]`` float."""
    return torch.view_as_real(z).reshape(*z.shape[:-1], 2 * z.shape[-1])


def db_to_linear(value_db: float) -> float:
    """``10^(value/10)``: power ratio from dB."""
    return math.pow(10.0, value_db / 10.0)
