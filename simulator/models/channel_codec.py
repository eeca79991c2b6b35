"""Channel encoder and decoder of the semantic codec (the paper's Fig. 3).

The encoder maps each output token's semantic vector ``h_t`` (width ``d``) to ``c`` complex
channel symbols with ``Es = 1`` per symbol; the decoder maps received symbols back to width ``d``.
Paper widths: ``d = 2304``, ``2c = 512`` reals.

Nested rates: with ``rates`` (``k`` per token, ``1 <= k <= c``) the encoder sends only the first
``k`` symbols of a token, normalised to ``Es = 1`` over those ``k``, and the decoder reads only the
first ``k`` received symbols (the others are zero-filled, whatever the channel put there). One
encoder/decoder pair trained with random ``k`` (stage 3, ``stages.joint.rates``) learns to put what
matters most in the first symbols, as a truncated PCA would. ``rates=None`` is the single-rate codec;
``k = c`` everywhere takes exactly the same path.
"""

from __future__ import annotations

import torch
from torch import nn

from channels.conventions import complex_to_real, normalize_power, real_to_complex

__all__ = ["ChannelEncoder", "ChannelDecoder", "prefix_mask"]


def prefix_mask(rates: torch.Tensor, symbols_per_token: int) -> torch.Tensor:
    """``rates [...]`` int (symbols kept per token) -> ``[..., c]`` bool, True on each token's first ``k``."""
    positions = torch.arange(symbols_per_token, device=rates.device)
    return positions < rates.unsqueeze(-1)


def _full_rate(rates: torch.Tensor | None, symbols_per_token: int) -> bool:
    return rates is None or bool((rates >= symbols_per_token).all())


@torch.no_grad()
def _identity_(linear: nn.Linear) -> None:
    """Zero bias and a leading identity block: output ``i`` = input ``i`` for ``i < min(in, out)``."""
    linear.weight.zero_()
    linear.bias.zero_()
    n = min(linear.in_features, linear.out_features)
    linear.weight[:n, :n] = torch.eye(n)


class ChannelEncoder(nn.Module):
    """``Linear(d -> 2c)``, paired into complex symbols and normalised per token.

    Input ``[..., d]`` float; output ``[..., c]`` complex64 with ``mean |x|^2 = 1`` over each
    token's ``c`` symbols.
    """

    def __init__(self, hidden_size: int, symbols_per_token: int):
        super().__init__()
        self.hidden_size, self.symbols_per_token = hidden_size, symbols_per_token
        self.linear = nn.Linear(hidden_size, 2 * symbols_per_token)

    def forward(self, hidden: torch.Tensor, rates: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden [..., d]``, ``rates [...]`` int or None -> ``[..., c]`` complex64 (zero after each
        token's ``k``-th symbol; ``Es = 1`` over the ``k`` sent)."""
        reals = self.linear(hidden.to(self.linear.weight.dtype)).float()
        symbols = real_to_complex(reals)
        if _full_rate(rates, self.symbols_per_token):
            return normalize_power(symbols)
        mask = prefix_mask(rates.to(symbols.device), self.symbols_per_token)
        return normalize_power(symbols, mask)

    def init_identity(self) -> None:
        """Copy the first ``min(d, 2c)`` coordinates of ``h`` into the reals; needs ``2c >= d`` to be lossless."""
        _identity_(self.linear)


class ChannelDecoder(nn.Module):
    """``Linear(2c -> d)``: received complex symbols ``[..., c]`` -> semantic vectors ``[..., d]`` float."""

    def __init__(self, hidden_size: int, symbols_per_token: int):
        super().__init__()
        self.hidden_size, self.symbols_per_token = hidden_size, symbols_per_token
        self.linear = nn.Linear(2 * symbols_per_token, hidden_size)

    def forward(self, symbols: torch.Tensor, rates: torch.Tensor | None = None) -> torch.Tensor:
        """``symbols [..., c]`` complex, ``rates [...]`` int or None -> ``[..., d]``; symbols past a
        token's ``k`` are ignored (zero-filled)."""
        if not _full_rate(rates, self.symbols_per_token):
            mask = prefix_mask(rates.to(symbols.device), self.symbols_per_token)
            symbols = torch.where(mask, symbols, torch.zeros_like(symbols))
        return self.linear(complex_to_real(symbols).to(self.linear.weight.dtype))

    def init_identity(self) -> None:
        """Inverse of :meth:`ChannelEncoder.init_identity` up to the encoder's power scaling."""
        _identity_(self.linear)
