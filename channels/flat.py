"""Flat (frequency-non-selective) channels on a stream of complex symbols: AWGN, Rayleigh and
Rician block fading, each with perfect-CSI equalisation at the receiver.

Every block maps ``x: [batch, num_users, num_symbols] complex64`` and a noise power ``no`` to a
:class:`ChannelOutput`. User ``u`` sees its own fading and its own noise; for a broadcast, pass the
same symbols to every user (:func:`channels.flat.broadcast`). Conventions: ``Es = 1`` per complex
symbol, ``no`` = complex noise power ``N0`` (linear), ``E|h|^2 = 1``; see
:mod:`channels.conventions`.

Sampling uses Sionna's ``complex_normal`` (the sampler behind ``sionna.phy.channel.AWGN`` and
``RayleighBlockFading``) but with injected per-user generators (:mod:`channels.randomness`)
instead of Sionna's single global one, so that adding a user leaves every other user's draws
unchanged. The output is differentiable with respect to ``x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from channels.randomness import Stream, complex_normal_per_user, uniform_per_user

__all__ = [
    "Channel",
    "ChannelOutput",
    "FlatChannel",
    "AWGNChannel",
    "RayleighBlockFadingChannel",
    "RicianBlockFadingChannel",
    "broadcast",
    "combine_receptions",
    "expand_noise",
    "EQUALIZERS",
]

EQUALIZERS = ("zf", "mmse")


@dataclass
class ChannelOutput:
    """What a receiver gets. All tensors ``[batch, num_users, num_symbols]``.

    Attributes:
        y: received symbols ``h * x + n`` (complex64).
        h: channel coefficient per symbol (complex64); the receiver's CSI estimate when the
            channel estimates it, else the true channel.
        x_hat: equalised symbols (complex64). ZF: unbiased, ``x_hat = x + n'``; MMSE: minimum
            mean-squared error for ``x ~ CN(0, 1)`` (biased towards 0).
        no_eff: noise variance of ``x_hat`` per symbol (float32, linear), as a demapper expects.
    """

    y: torch.Tensor
    h: torch.Tensor
    x_hat: torch.Tensor
    no_eff: torch.Tensor


@runtime_checkable
class Channel(Protocol):
    """What every channel block of this package is (flat, OFDM TDL/CDL, UMi/UMa; Sionna's ``Block``
    plays this part there): called with ``x [batch, num_users, num_symbols]`` complex64, the complex
    noise power ``no`` (scalar, ``[num_users]`` or ``[batch, num_users]``, linear, Es = 1) and the
    users' random ``stream``, it returns the :class:`ChannelOutput` of every user. The simulator, the
    digital chain and the trainers hold channels as this type."""

    def __call__(self, x: torch.Tensor, no: float | torch.Tensor, stream: Stream = None) -> ChannelOutput:
        ...


def broadcast(x: torch.Tensor, num_users: int) -> torch.Tensor:
    """One transmission seen by ``num_users`` receivers: ``[batch, n]`` -> ``[batch, num_users, n]``."""
    return x.unsqueeze(1).expand(x.shape[0], num_users, x.shape[-1])


def combine_receptions(first: ChannelOutput, second: ChannelOutput, no: float | torch.Tensor,
                       equalizer: str = "mmse") -> torch.Tensor:
    """Maximum-ratio combining of two receptions of the same symbols (chase combining):
    ``x_hat`` from ``y1 = h1 x + n1`` and ``y2 = h2 x + n2`` with independent noise of power ``no``
    (as in :meth:`FlatChannel.forward`), ``[batch, num_users, num_symbols]`` complex64. ZF: unbiased,
    noise ``no / (|h1|^2 + |h2|^2)``; MMSE: for ``x ~ CN(0, 1)``."""
    batch, num_users, _ = first.y.shape
    no = expand_noise(no, batch, num_users, device=first.y.device)
    numerator = torch.conj(first.h) * first.y + torch.conj(second.h) * second.y
    gain = first.h.abs() ** 2 + second.h.abs() ** 2
    return numerator / gain if equalizer == "zf" else numerator / (gain + no)


def expand_noise(no: float | torch.Tensor, batch: int, num_users: int, device=None) -> torch.Tensor:
    """Noise power as ``[batch, num_users, 1]`` float32 from a scalar, ``[num_users]`` or ``[batch, num_users]``."""
    no = torch.as_tensor(no, dtype=torch.float32, device=device)
    if no.dim() == 0:
        no = no.reshape(1, 1)
    elif no.dim() == 1:
        if no.shape[0] != num_users:
            raise ValueError(f"per-user noise has {no.shape[0]} entries for {num_users} users")
        no = no.reshape(1, num_users)
    elif no.dim() != 2:
        raise ValueError(f"noise power must be a scalar, [num_users] or [batch, num_users]; got shape {tuple(no.shape)}")
    if torch.any(no < 0):
        raise ValueError("noise power must be >= 0")
    return no.expand(batch, num_users).unsqueeze(-1)


class FlatChannel(nn.Module):
    """Base of the flat channels: draws ``h`` (subclass), adds noise, equalises with perfect CSI.

    Args:
        equalizer: ``"zf"`` (unbiased, what a demapper wants) or ``"mmse"`` (minimum MSE, what an
            analog semantic decoder usually wants).
    """

    def __init__(self, equalizer: str = "zf"):
        super().__init__()
        if equalizer not in EQUALIZERS:
            raise ValueError(f"unknown equalizer {equalizer!r}; choose one of {', '.join(EQUALIZERS)}")
        self.equalizer = equalizer

    def draw_fading(self, shape: tuple[int, int, int], stream: Stream, device) -> torch.Tensor:
        """Channel per symbol, ``[batch, num_users, num_symbols]`` complex64 with ``E|h|^2 = 1``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, no: float | torch.Tensor, stream: Stream = None) -> ChannelOutput:
        """Transmit.

        Args:
            x: ``[batch, num_users, num_symbols]`` complex64 (use :func:`broadcast` for one common stream).
            no: complex noise power ``N0`` (linear): scalar, ``[num_users]`` or ``[batch, num_users]``.
            stream: random stream(s), see :mod:`channels.randomness`. Fading is drawn before noise.
        """
        if x.dim() != 3 or not x.is_complex():
            raise ValueError(f"x must be complex [batch, num_users, num_symbols]; got {tuple(x.shape)} {x.dtype}")
        batch, num_users, _ = x.shape
        no = expand_noise(no, batch, num_users, device=x.device)
        h = self.draw_fading(tuple(x.shape), stream, x.device)
        noise = complex_normal_per_user(tuple(x.shape), stream, device=x.device)
        y = h * x + noise * torch.sqrt(no)
        gain = h.abs() ** 2
        if self.equalizer == "zf":
            x_hat = y / h
            no_eff = no / gain
        else:
            x_hat = torch.conj(h) * y / (gain + no)
            # Error variance of the linear MMSE estimate for unit-power x.
            no_eff = no / (gain + no)
        return ChannelOutput(y=y, h=h, x_hat=x_hat, no_eff=no_eff.expand(x.shape).contiguous())


class AWGNChannel(FlatChannel):
    """Additive white Gaussian noise only (``h = 1``)."""

    def draw_fading(self, shape, stream, device):
        return torch.ones(shape, dtype=torch.complex64, device=device)


class _BlockFading(FlatChannel):
    """Fading constant over blocks of ``coherence_symbols`` consecutive symbols (None: whole transmission)."""

    def __init__(self, coherence_symbols: int | None = None, equalizer: str = "zf"):
        super().__init__(equalizer)
        if coherence_symbols is not None and coherence_symbols < 1:
            raise ValueError(f"coherence_symbols must be >= 1, got {coherence_symbols}")
        self.coherence_symbols = coherence_symbols

    def _num_blocks(self, num_symbols: int) -> int:
        if self.coherence_symbols is None:
            return 1
        return math.ceil(num_symbols / self.coherence_symbols)

    def _expand_blocks(self, h_blocks: torch.Tensor, num_symbols: int) -> torch.Tensor:
        """``[batch, num_users, num_blocks]`` -> ``[batch, num_users, num_symbols]``."""
        length = num_symbols if self.coherence_symbols is None else self.coherence_symbols
        return h_blocks.repeat_interleave(length, dim=-1)[..., :num_symbols]


class RayleighBlockFadingChannel(_BlockFading):
    """``h ~ CN(0, 1)`` per user and coherence block (the law of ``sionna.phy.channel.RayleighBlockFading``)."""

    def draw_fading(self, shape, stream, device):
        batch, num_users, num_symbols = shape
        h = complex_normal_per_user((batch, num_users, self._num_blocks(num_symbols)), stream, device=device)
        return self._expand_blocks(h, num_symbols)


class RicianBlockFadingChannel(_BlockFading):
    """``h = sqrt(K/(K+1)) e^{j phi} + sqrt(1/(K+1)) CN(0, 1)``, ``phi ~ U[0, 2 pi)`` per block.

    Args:
        k_factor: Rician K, linear, >= 0 (power of the line-of-sight part over the scattered part).
            ``K = 0`` is Rayleigh; ``K -> inf`` approaches AWGN.
    """

    def __init__(self, k_factor: float, coherence_symbols: int | None = None, equalizer: str = "zf"):
        super().__init__(coherence_symbols, equalizer)
        if not (k_factor >= 0 and math.isfinite(k_factor)):
            raise ValueError(f"Rician K factor must be a finite number >= 0, got {k_factor}")
        self.k_factor = float(k_factor)

    def draw_fading(self, shape, stream, device):
        batch, num_users, num_symbols = shape
        block_shape = (batch, num_users, self._num_blocks(num_symbols))
        scattered = complex_normal_per_user(block_shape, stream, device=device)
        phase = 2 * math.pi * uniform_per_user(block_shape, stream, device=device)
        k = self.k_factor
        los = torch.polar(torch.full_like(phase, math.sqrt(k / (k + 1))), phase)
        h = los + math.sqrt(1 / (k + 1)) * scattered
        return self._expand_blocks(h, num_symbols)
