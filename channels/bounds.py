"""Lower bounds on the channel uses a message or a task needs: the yardsticks drawn on the
efficiency figure. One channel use is one complex symbol, SNR is ``Es/N0`` in dB
(:mod:`channels.conventions`), information is in bits.

- :func:`normal_approximation_channel_uses`: the fewest channel uses that carry ``k`` bits at block
  error probability ``eps`` over complex AWGN, from the normal approximation of Polyanskiy, Poor
  and Verdú, "Channel coding rate in the finite blocklength regime", IEEE Trans. Inf. Theory 56(5),
  2010: ``k = n C - sqrt(n V) Q^-1(eps) + log2(n) / 2`` with ``C = log2(1 + snr)`` and the dispersion
  ``V = snr (snr + 2) / (snr + 1)^2 (log2 e)^2`` per complex use (twice the real channel's per real
  dimension). Solved for ``n``. It approximates the best code's blocklength (accurate to a fraction
  of a channel use from ``n`` of about 100 on, optimistic for a few tens), not a code of 5G's.
- :func:`quasi_static_channel_uses`: the same for a block that sees one Rayleigh fade (``|h|^2``
  exponential, mean 1, receiver CSI, no transmitter CSI). Its dispersion is zero (Yang, Durisi,
  Koch and Polyanskiy, "Quasi-static multiple-antenna fading channels at finite blocklength",
  IEEE Trans. Inf. Theory 60(7), 2014), so the outage probability is the error probability to first
  order: ``P[log2(1 + snr |h|^2) < k / n] = eps`` gives ``n = k / log2(1 - snr ln(1 - eps))``.
- :func:`fano_channel_uses`: the fewest channel uses per task over any scheme, at any blocklength,
  for a receiver that must guess an answer ``A`` it does not know, from ``M`` possible ones, with
  error probability ``P_e``, given what it knows already (``Q``): Fano's inequality
  ``H(A | Y, Q) <= h(P_e) + P_e log2(M - 1)`` leaves ``I(A; Y | Q) >= H(A | Q) - h(P_e) - P_e log2(M - 1)``
  bits to carry, and no channel use carries more than ``C``.

Plain numpy/scipy, as :mod:`channels.theory`.
"""

from __future__ import annotations

import math

from scipy import optimize, special

__all__ = ["awgn_capacity", "awgn_dispersion", "normal_approximation_bits", "normal_approximation_channel_uses",
           "quasi_static_channel_uses", "binary_entropy", "fano_min_bits", "fano_channel_uses"]

_LOG2E = 1.0 / math.log(2.0)


def _snr(snr_db: float) -> float:
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    return 10.0 ** (snr_db / 10.0)


def awgn_capacity(snr_db: float) -> float:
    """``C = log2(1 + snr)`` bits per complex channel use."""
    return math.log2(1.0 + _snr(snr_db))


def awgn_dispersion(snr_db: float) -> float:
    """``V = snr (snr + 2) / (snr + 1)^2 (log2 e)^2`` bits^2 per complex channel use."""
    snr = _snr(snr_db)
    return snr * (snr + 2.0) / (snr + 1.0) ** 2 * _LOG2E ** 2


def _q_inverse(eps: float) -> float:
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    return math.sqrt(2.0) * special.erfcinv(2.0 * eps)


def normal_approximation_bits(n: float, eps: float, snr_db: float) -> float:
    """Bits ``n`` complex channel uses carry at block error ``eps`` (the normal approximation)."""
    return n * awgn_capacity(snr_db) - math.sqrt(n * awgn_dispersion(snr_db)) * _q_inverse(eps) + 0.5 * math.log2(n)


def normal_approximation_channel_uses(k_bits: float, eps: float, snr_db: float) -> float:
    """The smallest ``n >= 1`` (real) with ``normal_approximation_bits(n) >= k_bits``."""
    if k_bits <= 0:
        raise ValueError(f"k_bits must be > 0, got {k_bits}")
    if normal_approximation_bits(1.0, eps, snr_db) >= k_bits:
        return 1.0
    high = 2.0
    while normal_approximation_bits(high, eps, snr_db) < k_bits:
        high *= 2.0
    return optimize.brentq(lambda n: normal_approximation_bits(n, eps, snr_db) - k_bits, high / 2.0, high, xtol=1e-9)


def quasi_static_channel_uses(k_bits: float, eps: float, snr_db: float) -> float:
    """Channel uses of one Rayleigh-faded block carrying ``k_bits`` at outage (error) probability ``eps``."""
    if k_bits <= 0:
        raise ValueError(f"k_bits must be > 0, got {k_bits}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    return k_bits / math.log2(1.0 - _snr(snr_db) * math.log1p(-eps))


def binary_entropy(p: float) -> float:
    """``h(p) = -p log2 p - (1 - p) log2 (1 - p)`` bits (0 at 0 and 1)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    return 0.0 if p in (0.0, 1.0) else -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def fano_min_bits(conditional_entropy_bits: float, accuracy: float, num_answers: int) -> float:
    """``max(0, H(A|Q) - h(P_e) - P_e log2(M - 1))`` with ``P_e = 1 - accuracy``: the information
    any scheme must deliver per task to answer with that accuracy."""
    if num_answers < 1:
        raise ValueError(f"num_answers must be >= 1, got {num_answers}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy}")
    error = 1.0 - accuracy
    spread = error * math.log2(num_answers - 1) if num_answers > 1 else 0.0
    return max(0.0, conditional_entropy_bits - binary_entropy(error) - spread)


def fano_channel_uses(conditional_entropy_bits: float, accuracy: float, num_answers: int, snr_db: float) -> float:
    """:func:`fano_min_bits` over the AWGN capacity: channel uses per task no scheme goes below."""
    return fano_min_bits(conditional_entropy_bits, accuracy, num_answers) / awgn_capacity(snr_db)
