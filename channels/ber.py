"""Monte-Carlo BER / BLER of the digital chain on flat channels (backs ``python -m simulator ber``).

Channels: ``"awgn"`` (:class:`channels.flat.AWGNChannel`) and ``"rayleigh"`` (flat Rayleigh fading,
independent per symbol, perfect CSI, zero-forcing: ``RayleighBlockFadingChannel(coherence_symbols=1)``).
SNR is ``Es/N0`` in dB. Uncoded decisions are nearest-symbol (max-log LLR signs), the detector the
closed forms of :mod:`channels.theory` describe. Each SNR point replays the same seed (common random numbers: same bits,
fading and normalised noise at every SNR), so curves are smooth and reproducible point by point.
"""

from __future__ import annotations

import logging
import math

import torch

from channels.theory import MODULATIONS, ber_theory

__all__ = ["CHANNELS", "DEFAULT_NUM_BITS_UNCODED", "DEFAULT_NUM_BITS_CODED", "simulate_ber"]

logger = logging.getLogger(__name__)

CHANNELS = ("awgn", "rayleigh")
#: Default bit budget per SNR point: ~0.5 s uncoded (1e3 errors at BER 1e-3).
DEFAULT_NUM_BITS_UNCODED = 1_000_000
#: Default information-bit budget per SNR point when coded: ~50 LDPC code blocks, 1-3 s.
DEFAULT_NUM_BITS_CODED = 50_000
_DEFAULT_MAX_ERRORS = {False: 2_000, True: 50}
_UNCODED_CHUNK_BITS = 1 << 18
_CODED_BLOCKS_PER_CHUNK = 32
_CODE_BLOCK_BITS = 1024


def _make_channel(channel: str):
    from channels.flat import AWGNChannel, RayleighBlockFadingChannel

    if channel == "awgn":
        return AWGNChannel()
    return RayleighBlockFadingChannel(coherence_symbols=1)


def _validate(channel, modulation, snr_db, num_bits, code_rate, coded, max_errors) -> list[float]:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
    if modulation not in MODULATIONS:
        raise ValueError(f"unknown modulation {modulation!r}; choose one of {', '.join(MODULATIONS)}")
    if isinstance(snr_db, (int, float)):
        snr_db = [snr_db]
    try:
        values = [float(s) for s in snr_db]
    except (TypeError, ValueError):
        raise ValueError(f"snr_db must be a list of numbers, got {snr_db!r}") from None
    if not values or not all(math.isfinite(s) for s in values):
        raise ValueError(f"snr_db must be a non-empty list of finite numbers, got {snr_db!r}")
    if num_bits is not None and (not isinstance(num_bits, int) or isinstance(num_bits, bool) or num_bits < 1):
        raise ValueError(f"num_bits must be a positive int, got {num_bits!r}")
    if coded and not (isinstance(code_rate, (int, float)) and 0.2 <= code_rate <= 0.95):
        raise ValueError(f"code_rate must be in [0.2, 0.95] (5G LDPC), got {code_rate!r}")
    if max_errors is not None and (not isinstance(max_errors, int) or max_errors < 1):
        raise ValueError(f"max_errors must be a positive int, got {max_errors!r}")
    return values


def simulate_ber(channel: str, modulation: str, snr_db: list[float], coded: bool = False,
                 num_bits: int | None = None, seed: int = 0, code_rate: float = 0.5,
                 max_errors: int | None = None) -> list[dict]:
    """Monte-Carlo bit (and code-block) error rate, one dict per SNR point.

    Args:
        channel: ``"awgn"`` or ``"rayleigh"``.
        modulation: ``"qpsk"``, ``"qam16"`` or ``"qam64"`` (Gray, Es = 1).
        snr_db: ``Es/N0`` values in dB.
        coded: 5G LDPC (code blocks of 1024 information bits, no CRC) at ``code_rate``.
        num_bits: payload bits simulated per point at most; default
            :data:`DEFAULT_NUM_BITS_UNCODED` / :data:`DEFAULT_NUM_BITS_CODED`.
        seed: seeds the bits and the channel (same seed at every point).
        code_rate: LDPC code rate in [0.2, 0.95] (ignored when uncoded).
        max_errors: stop a point early once this many errors are counted: bit errors when
            uncoded (default 2000), code-block errors when coded (default 50).

    Returns:
        ``[{"snr_db", "ber", "ber_theory", "bler", "num_bits", "num_errors", "num_blocks",
        "num_block_errors", "num_symbols", "num_coded_bits", "channel", "modulation", "coded",
        "code_rate", "seed"}, ...]``. ``ber_theory`` is the closed form (uncoded only, else None);
        ``bler`` is None when uncoded; ``num_symbols`` counts channel uses.

    Raises:
        ValueError: one line naming the bad argument and the allowed values.
    """
    snr_values = _validate(channel, modulation, snr_db, num_bits, code_rate, coded, max_errors)
    from channels.digital import DigitalChain
    from channels.randomness import user_generators

    coded = bool(coded)
    budget = num_bits if num_bits is not None else (DEFAULT_NUM_BITS_CODED if coded else DEFAULT_NUM_BITS_UNCODED)
    error_cap = max_errors if max_errors is not None else _DEFAULT_MAX_ERRORS[coded]
    if coded:
        chain = DigitalChain(modulation, float(code_rate), crc=False, max_code_block_bits=_CODE_BLOCK_BITS)
        rows, bits_per_row = _CODED_BLOCKS_PER_CHUNK, _CODE_BLOCK_BITS
    else:
        chain = DigitalChain(modulation, None, crc=False, max_code_block_bits=8448)
        rows, bits_per_row = 1, min(_UNCODED_CHUNK_BITS, max(budget, 1))
        bits_per_row -= bits_per_row % MODULATIONS[modulation]  # whole symbols
        bits_per_row = max(bits_per_row, MODULATIONS[modulation])
    link = _make_channel(channel)

    results = []
    for snr in snr_values:
        bit_gen = torch.Generator().manual_seed(seed)
        channel_stream = user_generators(seed, 1, stream_id=1)
        num_sent = num_err = num_blocks = num_block_err = num_symbols = num_coded_bits = 0
        while num_sent < budget:
            chunk_rows = min(rows, math.ceil((budget - num_sent) / bits_per_row))
            chunk_bits = bits_per_row if coded else min(bits_per_row, budget - num_sent)
            bits = torch.randint(0, 2, (chunk_rows, 1, chunk_bits), generator=bit_gen).to(torch.float32)
            out = chain.transmit(bits, link, snr, stream=channel_stream)
            num_sent += bits.numel()
            num_err += int(out.num_bit_errors.sum())
            num_blocks += int(out.block_errors.numel())
            num_block_err += int(out.block_errors.sum())
            num_symbols += chunk_rows * out.segmentation.num_symbols
            num_coded_bits += chunk_rows * out.segmentation.num_coded_bits
            if (num_block_err if coded else num_err) >= error_cap:
                break
        theory = None if coded else ber_theory(channel, modulation, snr)
        logger.debug("ber %s %s %.2f dB: %d/%d errors", channel, modulation, snr, num_err, num_sent)
        results.append({
            "snr_db": snr,
            "ber": num_err / num_sent,
            "ber_theory": theory,
            "bler": num_block_err / num_blocks if coded else None,
            "num_bits": num_sent,
            "num_errors": num_err,
            "num_blocks": num_blocks if coded else None,
            "num_block_errors": num_block_err if coded else None,
            "num_symbols": num_symbols,
            "num_coded_bits": num_coded_bits,
            "channel": channel,
            "modulation": modulation,
            "coded": coded,
            "code_rate": float(code_rate) if coded else None,
            "seed": seed,
        })
    return results
