"""Kolmogorov-Arnold Network layers for the cross-modal projector (the paper's Section II-B).

A KAN layer puts a learnable function on every input-output edge:
``y_o = sum_i  w_base[i,o] * silu(x_i) + w_spline[i,o] * sum_j c[i,o,j] B_j(x_i)``,
with ``B_j`` the B-spline basis of order ``k`` on a uniform grid of ``G`` intervals, extended by
``k`` knots on each side. This is pykan's ``KANLayer`` (mask all ones), computed efficiently:
expand the inputs once into their basis values ``[N, in, G+k]`` and do one matmul, instead of
pykan's per-edge einsum with saved activations (pykan needs ~3.5 GB and ~9 s per step already at
256->512->512 on CPU). ``tests/models/test_kan.py`` checks it against pykan numerically.

Splines are zero outside the extended knot span (``grid_range`` widened by ``k`` steps), so the
projector normalises its input (LayerNorm) to keep activations on the span.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KANLayer", "KANProjector", "MLPProjector", "bspline_basis", "uniform_bspline_basis", "uniform_knots"]


def uniform_knots(grid_size: int, order: int, grid_range: tuple[float, float]) -> torch.Tensor:
    """Knots ``[grid_size + 2*order + 1]`` of a uniform grid on ``grid_range`` extended by ``order`` steps."""
    low, high = grid_range
    step = (high - low) / grid_size
    return low + step * torch.arange(-order, grid_size + order + 1, dtype=torch.float32)


def bspline_basis(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """B-spline basis values by the Cox-de Boor recursion (training, and the reference).

    Args:
        x: ``[..., in]`` float.
        knots: ``[num_knots]`` increasing (shared by all inputs).
        order: spline order ``k`` (3 = cubic).

    Returns:
        ``[..., in, num_knots - 1 - order]``: the ``G + k`` basis functions at ``x``; all zero
        outside ``[knots[0], knots[-1])``.
    """
    x = x.unsqueeze(-1)
    basis = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for level in range(1, order + 1):
        left = (x - knots[: -(level + 1)]) / (knots[level:-1] - knots[: -(level + 1)])
        right = (knots[level + 1:] - x) / (knots[level + 1:] - knots[1:-level])
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis


def uniform_bspline_basis(x: torch.Tensor, first_knot: float, step: float, num_intervals: int,
                          order: int) -> torch.Tensor:
    """:func:`bspline_basis` for the uniform knots ``first_knot + step * j`` (``j = 0..num_intervals``),
    equal to float rounding, computing only the ``k + 1`` functions that are non-zero at each ``x``.

    In the local coordinate ``f`` of ``x``'s knot interval ``i``, uniform knots make every Cox-de
    Boor denominator ``d * step``, so the non-zero values ``B_{i-k+r}`` follow from de Boor's triangle
    ``B^d_r = ((f + d - r) B^{d-1}_{r-1} + (r + 1 - f) B^{d-1}_r) / d`` (the ``1/d`` factors applied
    once, as ``1/k!``, at the end): about ``2 (k+1)^2`` operations per input instead of
    ``~5 k (G + 2k)``, then one scatter into the dense layout the layer's matmul takes. Without
    autograd the projector's cost was this elementwise work.

    Returns ``[..., in, num_intervals - order]`` (a view of a padded buffer).
    """
    u = (x - first_knot) / step
    cell = u.floor()
    f = u - cell
    values = [((u >= 0) & (u < num_intervals)).to(x.dtype)]  # 0 outside the span zeroes every level
    scale = 1.0
    for d in range(1, order + 1):
        level = []
        for r in range(d + 1):
            term = (f + (d - r)) * values[r - 1] if r > 0 else None
            if r < d:
                rising = ((r + 1) - f) * values[r]
                term = rising if term is None else term.add_(rising)
            level.append(term)
        values, scale = level, scale / d
    # B_{i-k+r} sits at column i + r of a buffer padded by k on each side: no index falls outside.
    index = cell.clamp_(0, num_intervals - 1).to(torch.int64).unsqueeze(-1) + torch.arange(order + 1, device=x.device)
    padded = x.new_zeros(*x.shape, num_intervals + order)
    padded.scatter_(-1, index, torch.stack(values, dim=-1).mul_(scale))
    return padded[..., order: num_intervals]


class KANLayer(nn.Module):
    """One KAN layer, ``[..., in_features] -> [..., out_features]``.

    Parameters per edge: ``G + k`` spline coefficients, one base weight and one spline scaler (the
    paper's widths 1152 -> 2304 -> 2304 with G=5, k=3 give 79.6 M parameters).

    Args:
        grid_size: number of grid intervals ``G`` (paper: 5).
        order: spline order ``k`` (paper: 3).
        grid_range: span of the (unextended) grid; the spline acts on it widened by ``k`` steps.
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5, order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), noise_scale: float = 0.1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.order, self.grid_range = grid_size, order, tuple(grid_range)
        self.register_buffer("knots", uniform_knots(grid_size, order, tuple(grid_range)), persistent=True)
        num_basis = grid_size + order
        # Layouts follow pykan: coef [in, out, G+k], scale_base / scale_sp [in, out].
        self.coef = nn.Parameter(torch.empty(in_features, out_features, num_basis))
        self.scale_base = nn.Parameter(torch.empty(in_features, out_features))
        self.scale_sp = nn.Parameter(torch.empty(in_features, out_features))
        self.noise_scale = noise_scale
        self.folded: nn.Linear | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.scale_base, -bound, bound)
        nn.init.constant_(self.scale_sp, bound)
        nn.init.uniform_(self.coef, -self.noise_scale, self.noise_scale)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., in] -> [..., in, G+k]`` basis values (the local uniform-grid form without autograd)."""
        if torch.is_grad_enabled() and (x.requires_grad or (self.coef is not None and self.coef.requires_grad)):
            return bspline_basis(x, self.knots.to(x.dtype), self.order)
        low, high = self.grid_range
        step = (high - low) / self.grid_size
        return uniform_bspline_basis(x, low - self.order * step, step, self.grid_size + 2 * self.order, self.order)

    def _spline_weight(self) -> torch.Tensor:
        """``[in*(G+k), out]``: the coefficients times their scalers, in the order of ``basis(x).flatten(-2)``."""
        spline_weight = self.coef * self.scale_sp.unsqueeze(-1)  # [in, out, G+k]
        return spline_weight.permute(0, 2, 1).reshape(-1, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bases = self.basis(x).flatten(-2)  # [..., in*(G+k)]
        if self.folded is not None:
            return self.folded(torch.cat([F.silu(x), bases], dim=-1))
        return F.silu(x) @ self.scale_base.to(x.dtype) + bases @ self._spline_weight().to(x.dtype)

    @torch.no_grad()
    def fold(self) -> "KANLayer":
        """For inference: hold the layer as one ``nn.Linear`` over ``[silu(x), bases]`` (weight
        ``[out, in*(1+G+k)]``, the base weights then the scaled spline coefficients), the same function,
        so that a quantiser that acts on ``nn.Linear`` (:mod:`simulator.models.quantize`) covers the
        projector. The separate parameters are dropped; a folded layer is not trained."""
        if self.folded is None:
            weight = torch.cat([self.scale_base, self._spline_weight()], dim=0)  # [in*(1+G+k), out]
            self.folded = nn.Linear(weight.shape[0], self.out_features, bias=False, device=weight.device,
                                    dtype=weight.dtype)
            self.folded.weight.copy_(weight.T)
            self.folded.requires_grad_(False)
            self.coef = self.scale_base = self.scale_sp = None
        return self

    def extra_repr(self) -> str:
        span = (self.knots[0].item(), self.knots[-1].item())
        return f"{self.in_features} -> {self.out_features}, G={self.grid_size}, k={self.order}, span=[{span[0]:.2f}, {span[1]:.2f}]"


class KANProjector(nn.Module):
    """Cross-modal projector: LayerNorm -> KAN -> LayerNorm -> KAN, ``[B, P, d_vision] -> [B, P, d_llm]``.

    The LayerNorms keep activations on the splines' knot span, so large visual features do not
    silently switch the spline branch off.
    """

    def __init__(self, vision_dim: int, llm_dim: int, hidden_dim: int | None = None, grid_size: int = 5,
                 order: int = 3, grid_range: tuple[float, float] = (-2.0, 2.0)):
        super().__init__()
        hidden_dim = hidden_dim or llm_dim
        self.input_norm = nn.LayerNorm(vision_dim)
        self.layer1 = KANLayer(vision_dim, hidden_dim, grid_size, order, grid_range)
        self.hidden_norm = nn.LayerNorm(hidden_dim)
        self.layer2 = KANLayer(hidden_dim, llm_dim, grid_size, order, grid_range)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.hidden_norm(self.layer1(self.input_norm(features))))


class MLPProjector(nn.Module):
    """LLaVA-1.5-style ablation: Linear -> GELU -> Linear, ``[B, P, d_vision] -> [B, P, d_llm]``."""

    def __init__(self, vision_dim: int, llm_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or llm_dim
        self.net = nn.Sequential(nn.Linear(vision_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, llm_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
