"""Closed-form uncoded bit error rates of Gray-mapped square M-QAM (QPSK, 16-QAM, 64-QAM, ...).

SNR is ``Es/N0`` in dB (``Es = 1`` per complex symbol, ``N0`` the complex noise power, see
:mod:`channels.conventions`); ``Eb/N0 = Es/N0 / log2(M)``.

AWGN uses the exact expression of K. Cho and D. Yoon, "On the general BER expression of one- and
two-dimensional amplitude modulations", IEEE Trans. Commun. 50(7), 2002 (their eq. 14-16). It is a
weighted sum of ``erfc(sqrt(c * snr))`` terms, so the Rayleigh flat-fading average (perfect CSI,
exponentially distributed instantaneous SNR with mean ``snr``) follows term by term from
``E[erfc(sqrt(c * g))] = 1 - sqrt(c * snr / (1 + c * snr))``. :func:`ber_rayleigh_numerical`
integrates the AWGN expression over the exponential pdf instead, as an independent check.

Plain numpy/scipy: importing this module does not pull in Sionna or torch.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import integrate, special

__all__ = [
    "MODULATIONS",
    "CHANNELS_WITH_THEORY",
    "bits_per_symbol",
    "ber_awgn",
    "ber_rayleigh",
    "ber_rayleigh_numerical",
    "ber_theory",
]

#: Modulation names used across the project -> bits per complex symbol.
MODULATIONS: dict[str, int] = {"qpsk": 2, "qam16": 4, "qam64": 6}

#: Channels for which :func:`ber_theory` has a closed form.
CHANNELS_WITH_THEORY = ("awgn", "rayleigh")


def bits_per_symbol(modulation: str | int) -> int:
    """Bits per symbol of a square QAM: a name of :data:`MODULATIONS` or an even int >= 2.

    Raises:
        ValueError: unknown name, or an int that is not a square QAM order.
    """
    if isinstance(modulation, str):
        if modulation not in MODULATIONS:
            raise ValueError(f"unknown modulation {modulation!r}; choose one of {', '.join(MODULATIONS)}")
        return MODULATIONS[modulation]
    if isinstance(modulation, (int, np.integer)) and not isinstance(modulation, bool):
        if modulation >= 2 and modulation % 2 == 0:
            return int(modulation)
    raise ValueError(f"modulation must be one of {', '.join(MODULATIONS)} or an even number of bits per "
                     f"symbol >= 2; got {modulation!r}")


@lru_cache(maxsize=None)
def _erfc_terms(num_bits: int) -> tuple[tuple[float, float], ...]:
    """Cho & Yoon BER of Gray square M-QAM as ``sum_j w_j * erfc(sqrt(c_j * snr))``.

    Returns:
        ``((w_j, c_j), ...)`` with ``snr = Es/N0`` linear.
    """
    m_order = 2**num_bits
    side = int(round(math.sqrt(m_order)))  # sqrt(M) levels per real dimension
    bits_per_dim = num_bits // 2
    terms: dict[int, float] = {}
    for k in range(1, bits_per_dim + 1):
        for i in range(int((1 - 2.0**-k) * side)):
            sign = (-1) ** math.floor(i * 2 ** (k - 1) / side)
            weight = sign * (2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / side + 0.5))
            terms[i] = terms.get(i, 0.0) + weight / side / bits_per_dim
    return tuple((w, (2 * i + 1) ** 2 * 3.0 / (2.0 * (m_order - 1))) for i, w in sorted(terms.items()) if w != 0.0)


def _snr_linear(snr_db) -> np.ndarray:
    return np.power(10.0, np.asarray(snr_db, dtype=np.float64) / 10.0)


def _as_output(values: np.ndarray, snr_db):
    return float(values) if np.ndim(snr_db) == 0 else values


def ber_awgn(modulation: str | int, snr_db):
    """Exact uncoded BER of Gray square M-QAM on AWGN.

    Args:
        modulation: ``"qpsk"``, ``"qam16"``, ``"qam64"`` or bits per symbol (even int).
        snr_db: ``Es/N0`` in dB, float or array.

    Returns:
        BER, float (scalar input) or float64 array of the shape of ``snr_db``.
        QPSK reduces to ``0.5 * erfc(sqrt(snr / 2))``.
    """
    snr = _snr_linear(snr_db)
    ber = sum(w * special.erfc(np.sqrt(c * snr)) for w, c in _erfc_terms(bits_per_symbol(modulation)))
    return _as_output(ber, snr_db)


def ber_rayleigh(modulation: str | int, snr_db):
    """Uncoded BER of Gray square M-QAM on flat Rayleigh fading with perfect CSI (closed form).

    Args:
        modulation: as in :func:`ber_awgn`.
        snr_db: average ``Es/N0`` in dB (``E|h|^2 = 1``), float or array.

    Returns:
        BER averaged over ``|h|^2 ~ Exp(1)``; QPSK is ``0.5 * (1 - sqrt(snr / (2 + snr)))``.
    """
    snr = _snr_linear(snr_db)
    ber = sum(w * (1.0 - np.sqrt(c * snr / (1.0 + c * snr))) for w, c in _erfc_terms(bits_per_symbol(modulation)))
    return _as_output(ber, snr_db)


def ber_rayleigh_numerical(modulation: str | int, snr_db: float) -> float:
    """:func:`ber_awgn` integrated over the exponential SNR pdf with ``scipy.integrate.quad``.

    Args:
        modulation: as in :func:`ber_awgn`.
        snr_db: average ``Es/N0`` in dB (scalar).
    """
    mean_snr = float(_snr_linear(snr_db))
    terms = _erfc_terms(bits_per_symbol(modulation))

    def integrand(g: float) -> float:
        return sum(w * special.erfc(math.sqrt(c * g)) for w, c in terms) * math.exp(-g / mean_snr) / mean_snr

    value, _ = integrate.quad(integrand, 0.0, np.inf, limit=200, epsabs=1e-14, epsrel=1e-10)
    return float(value)


def ber_theory(channel: str, modulation: str | int, snr_db):
    """Closed-form uncoded BER for ``channel`` in :data:`CHANNELS_WITH_THEORY`, else ``None``."""
    if channel == "awgn":
        return ber_awgn(modulation, snr_db)
    if channel == "rayleigh":
        return ber_rayleigh(modulation, snr_db)
    return None
