"""Link adaptation of the digital chain: 3GPP TS 38.214 PDSCH MCS tables, the SNR each MCS needs,
the MCS choice for an SNR, and the code-block error rates of Sionna's PHY abstraction.

- :class:`MCS`, :func:`mcs_table`: the MCS tables (via ``sionna.phy.nr.utils.decode_mcs_index``).
  Entries with code rate < 1/5 (table 1, MCS 0-2) are left out: ``LDPC5GEncoder`` does not support
  rates below 1/5 (5G reaches them by repetition in rate matching) and Sionna ships no BLER curves
  for them.
- :func:`required_snr_db`, :func:`select_mcs`: per-MCS SNR threshold = lowest SNR (0.1 dB grid)
  at which the BLER of ``sionna.sys.PHYAbstraction``'s interpolated AWGN BLER tables
  (PDSCH, code block size ``code_block_size``) is ``<= target_bler``, plus the bit-level chain's
  measured receiver loss (:data:`RECEIVER_LOSS_DB`), made non-decreasing in the MCS index by a running
  maximum (the raw interpolated tables are not monotone: they are simulated on a 1.8 dB SNR grid).
- :func:`effective_sinr`, :func:`code_block_bler`: what
  :meth:`channels.digital.DigitalChain.transmit_abstract` draws block errors from.

Sionna is imported lazily (``import sionna.phy`` costs ~4 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = ["MCS", "mcs_table", "get_mcs", "required_snr_db", "tables_required_snr_db", "receiver_loss_db",
           "RECEIVER_LOSS_DB", "select_mcs", "effective_sinr", "code_block_bler", "PDSCH_CATEGORY",
           "DEFAULT_CODE_BLOCK_BITS", "CRC_BITS", "MIN_CODE_RATE", "MAX_CODE_RATE"]

#: ``sionna.sys`` MCS category of the downlink shared channel (0 = PUSCH, 1 = PDSCH).
PDSCH_CATEGORY = 1
#: Largest code block (LDPC information bits, CRC included) by default.
DEFAULT_CODE_BLOCK_BITS = 1024
#: CRC attached to every code block (3GPP 38.212 CRC24B).
CRC_BITS = 24
#: Code rates ``LDPC5GEncoder`` supports.
MIN_CODE_RATE, MAX_CODE_RATE = 0.2, 0.95
_SUPPORTED_TABLES = (1, 2)  # EESM beta tables exist for 38.214 tables 1 and 2 only
#: Receiver loss of the bit-level chain against Sionna's BLER tables, dB, per 38.214 table, code
#: block size (information bits, CRC included) and MCS index; sizes in between interpolate linearly in
#: log2(block size). The PHY abstraction and the MCS choice both use it, so ``digital_link:
#: abstraction`` reproduces ``bits``. Two calibrations (``scripts/calibrate_digital.py``):
#:
#: - full 1024-bit blocks, every MCS, at the tables' 10% BLER point (``--table 1``, 400 blocks per
#:   0.1 dB step): this decoder needs 0.0-0.8 dB more than the tables there;
#: - short blocks (32-88 bits: the one-word answers of ``digital_answer``) of MCS 3, the lowest MCS,
#:   at the top of its waterfall (``--at-snr -5 --block-bits 32 40 48 56 64 72 80 88 --blocks 4000``):
#:   below every threshold the chain still sends at MCS 3 and ARQ decides how many payloads arrive,
#:   so what counts is the block error rate there, as the receiver sees it (CRC failed: 0.953-0.997 at
#:   -5 dB). The decoder falls behind the tables the more the longer the block: +0.14 dB at 32 bits to
#:   +0.87 dB at 72 bits. 80 and 88 bits sit at the tables' edge (-5 dB, no slope below it), where
#:   any positive loss gives BLER 1 (the decoder: 0.994 / 0.997). Above the threshold ARQ delivers
#:   (nearly) every payload with either BLER, so the one value per size serves all SNRs.
#:
#: Table 2 (up to 256-QAM): 1024-bit blocks at the 10% point as for table 1 (``--table 2``): 0.0-0.5 dB
#: (MCS 27 never reaches 10% BLER in the tables below 30 dB, so it is never chosen; loss 0). Short
#: blocks of table 2 stay on the 1024-bit values. Table 1's 1024-bit losses were measured with genie
#: block errors (payload bits only), before the script counted CRC failures; with 24 of 1024 bits in
#: the CRC the difference is small (table 2's count CRC failures).
RECEIVER_LOSS_DB: dict[int, dict[int, dict[int, float]]] = {
    1: {
        32: {3: 0.14},
        40: {**{index: 0.0 for index in range(3, 29)}, 3: 0.29},
        48: {3: 0.51},
        56: {3: 0.6},
        64: {3: 0.83},
        72: {3: 0.87},
        80: {3: 0.05},
        88: {3: 0.05},
        1024: {3: 0.3, 4: 0.5, 5: 0.6, 6: 0.1, 7: 0.8, 8: 0.1, 9: 0.5, 10: 0.5, 11: 0.1, 12: 0.5, 13: 0.1, 14: 0.7,
               15: 0.4, 16: 0.6, 17: 0.2, 18: 0.3, 19: 0.4, 20: 0.2, 21: 0.2, 22: 0.6, 23: 0.0, 24: 0.4, 25: 0.0,
               26: 0.4, 27: 0.0, 28: 0.3},
    },
    2: {
        1024: {2: 0.0, 3: 0.4, 4: 0.5, 5: 0.4, 6: 0.5, 7: 0.0, 8: 0.5, 9: 0.3, 10: 0.4, 11: 0.3, 12: 0.0, 13: 0.4,
               14: 0.2, 15: 0.2, 16: 0.1, 17: 0.1, 18: 0.4, 19: 0.2, 20: 0.0, 21: 0.1, 22: 0.1, 23: 0.3, 24: 0.2,
               25: 0.0, 26: 0.0, 27: 0.0},
    },
}
_EXTRAPOLATION_SPAN_DB = 2.0  # BLER slope below the tables: from their lowest SNR to 2 dB above


@dataclass(frozen=True)
class MCS:
    """Modulation and coding scheme.

    Attributes:
        index: 38.214 MCS index, or ``None`` for a custom (modulation, rate) pair.
        modulation_order: bits per complex symbol (2 = QPSK, 4 = 16-QAM, 6 = 64-QAM, 8 = 256-QAM).
        code_rate: LDPC code rate in [0.2, 0.95], or ``None`` for uncoded transmission.
        table_index: 38.214 PDSCH MCS table (1 or 2) the index refers to.
    """

    index: int | None
    modulation_order: int
    code_rate: float | None
    table_index: int = 1

    @property
    def spectral_efficiency(self) -> float:
        """Information bits per complex symbol, ``modulation_order * code_rate`` (ignores CRC)."""
        return self.modulation_order * (1.0 if self.code_rate is None else self.code_rate)


def _check_table_index(table_index: int) -> None:
    if table_index not in _SUPPORTED_TABLES:
        raise ValueError(f"table_index must be one of {_SUPPORTED_TABLES} (38.214 PDSCH tables), got {table_index!r}")


@lru_cache(maxsize=None)
def _mcs_table_cached(table_index: int) -> tuple[MCS, ...]:
    from sionna.phy.nr.utils import decode_mcs_index

    indices = torch.arange(29)
    orders, rates = decode_mcs_index(indices, table_index=table_index, is_pusch=False,
                                     check_index_validity=False, device="cpu")
    table = []
    for index, order, rate in zip(indices.tolist(), orders.tolist(), rates.tolist()):
        if order > 0 and MIN_CODE_RATE <= rate <= MAX_CODE_RATE:
            table.append(MCS(index=index, modulation_order=int(order), code_rate=float(rate), table_index=table_index))
    return tuple(table)


def mcs_table(table_index: int = 1) -> list[MCS]:
    """38.214 PDSCH MCS table ``table_index`` (1: up to 64-QAM, 2: up to 256-QAM), rates >= 1/5 only.

    Table 1 gives MCS 3..28 (QPSK r=0.25 .. 64-QAM r=0.93).
    """
    _check_table_index(table_index)
    return list(_mcs_table_cached(table_index))


def get_mcs(index: int, table_index: int = 1) -> MCS:
    """The :class:`MCS` with 38.214 ``index`` in ``table_index``; ValueError if not in :func:`mcs_table`."""
    for mcs in mcs_table(table_index):
        if mcs.index == index:
            return mcs
    valid = [m.index for m in mcs_table(table_index)]
    raise ValueError(f"mcs index {index!r} not available in table {table_index}; valid: {valid[0]}..{valid[-1]}")


@lru_cache(maxsize=1)
def _phy_abstraction():
    """One shared ``sionna.sys.PHYAbstraction`` (CPU; ~0.3 s to interpolate the tables)."""
    from sionna.sys import PHYAbstraction

    return PHYAbstraction(device="cpu")


@lru_cache(maxsize=1)
def _eesm():
    from sionna.sys import EESM

    return EESM(device="cpu")


def _probit_success(bler: torch.Tensor) -> torch.Tensor:
    """``Phi^-1(1 - bler)``, with ``bler`` kept inside (1e-9, 1 - 1e-9) so the result is finite."""
    success = (1.0 - bler.to(torch.float64)).clamp(1e-9, 1.0 - 1e-9)
    return torch.special.ndtri(success)


def _extend_below_table(bler: torch.Tensor, sinr_db: torch.Tensor, mcs: MCS, block_bits: int) -> torch.Tensor:
    """BLER at SINRs below the tables' lowest SNR, continued down the waterfall instead of held flat.

    ``PHYAbstraction.get_bler`` clamps its SNR to the table grid (lowest point -5 dB), so a short
    code block keeps the table's edge BLER (0.94 for MCS 3 with 40 bits) at -10 or -30 dB alike,
    and with ARQ ~20% of such blocks would arrive where the LDPC decoder delivers none. Below the
    grid the success probability follows the normal approximation of finite-length coding
    (``P(success) = Phi(a + b * snr_db)``, Polyanskiy et al. 2010), with ``a, b`` through the table
    at its lowest SNR and 2 dB above it. Measured against the bit-level chain (MCS 3, 40-bit
    blocks, AWGN, 300 blocks per point): BLER 0.990/0.999 vs 0.983/0.993 at -6/-7 dB, 1.0 vs 1.0
    at -8 dB. A flat or rising table edge (no slope to follow) gives BLER 1 below the grid.

    Args:
        bler: ``[n]`` table BLER at ``sinr_db``.
        sinr_db: ``[n]`` effective SINR of each code block, dB.
    """
    low_db = float(_phy_abstraction().snr_db_interp_min_max_delta[0])
    below = sinr_db < low_db
    if not bool(below.any()):
        return bler
    anchors_db = torch.tensor([low_db, low_db + _EXTRAPOLATION_SPAN_DB], dtype=torch.float32)
    anchors = _phy_abstraction().get_bler(mcs.index, mcs.table_index, PDSCH_CATEGORY, block_bits,
                                          torch.pow(10.0, anchors_db / 10.0)).clamp(0.0, 1.0).reshape(-1)
    z_low, z_high = _probit_success(anchors).tolist()
    slope = (z_high - z_low) / _EXTRAPOLATION_SPAN_DB
    if slope <= 0.0:
        extended = torch.ones_like(bler)
    else:
        z = z_low + slope * (sinr_db.to(torch.float64) - low_db)
        extended = (1.0 - torch.special.ndtr(z)).to(bler.dtype)
    return torch.where(below, extended, bler)


def _snr_grid_db() -> np.ndarray:
    low, high, delta = _phy_abstraction().snr_db_interp_min_max_delta
    return np.arange(low, high, delta)


def tables_required_snr_db(mcs: MCS, target_bler: float = 0.1,
                           code_block_size: int = DEFAULT_CODE_BLOCK_BITS) -> float:
    """Lowest SNR (dB, 0.1 dB grid) at which Sionna's BLER table of ``mcs`` is ``<= target_bler``,
    without this chain's receiver loss; ``inf`` if never below 30 dB."""
    phy = _phy_abstraction()
    cbs_idx = int(phy.get_idx_from_grid(torch.tensor(float(code_block_size)), "cbs"))
    bler = phy.bler_table_interp[PDSCH_CATEGORY, mcs.table_index - 1, mcs.index, cbs_idx].numpy()
    ok = np.nonzero(bler <= target_bler)[0]
    return float(_snr_grid_db()[ok[0]]) if ok.size else math.inf


def receiver_loss_db(mcs: MCS, block_bits: int = DEFAULT_CODE_BLOCK_BITS) -> float:
    """How much more SNR this chain's bit-level receiver needs than Sionna's tables with code blocks
    of ``block_bits`` information bits, dB (see :data:`RECEIVER_LOSS_DB`; 0 where not calibrated)."""
    by_size = RECEIVER_LOSS_DB.get(mcs.table_index, {})
    sizes = sorted(size for size in by_size if mcs.index in by_size[size])
    if not sizes:
        return 0.0
    losses = [by_size[size][mcs.index] for size in sizes]
    return float(np.interp(math.log2(max(block_bits, 1)), np.log2(sizes), losses))


@lru_cache(maxsize=None)
def _thresholds_db(table_index: int, target_bler: float, code_block_size: int) -> tuple[float, ...]:
    """Required SNR (dB) of this chain per entry of :func:`mcs_table` (tables + receiver loss),
    non-decreasing; ``inf`` if never reached."""
    thresholds, running = [], -math.inf
    for mcs in _mcs_table_cached(table_index):
        threshold = tables_required_snr_db(mcs, target_bler, code_block_size) + receiver_loss_db(mcs, code_block_size)
        running = max(running, threshold)
        thresholds.append(round(running, 6))
    return tuple(thresholds)


def _check_bler(target_bler: float) -> None:
    if not 0.0 < target_bler < 1.0:
        raise ValueError(f"target_bler must be in (0, 1), got {target_bler!r}")


def required_snr_db(mcs: MCS, target_bler: float = 0.1, code_block_size: int = DEFAULT_CODE_BLOCK_BITS) -> float:
    """SNR (``Es/N0``, dB) at which this chain reaches ``target_bler`` per code block on AWGN.

    ``sionna.sys.PHYAbstraction``'s PDSCH BLER tables (see module docstring) plus the chain's
    measured receiver loss (:func:`receiver_loss_db`); ``inf`` if the table never gets there
    below 30 dB.
    """
    _check_bler(target_bler)
    if mcs.index is None:
        raise ValueError("mcs has no 38.214 index: required SNR is only tabulated for table MCSs")
    table = _mcs_table_cached(mcs.table_index)
    position = [m.index for m in table].index(get_mcs(mcs.index, mcs.table_index).index)
    return _thresholds_db(mcs.table_index, float(target_bler), int(code_block_size))[position]


def select_mcs(snr_db: float, target_bler: float = 0.1, table_index: int = 1,
               code_block_size: int = DEFAULT_CODE_BLOCK_BITS) -> MCS | None:
    """Highest MCS of :func:`mcs_table` whose :func:`required_snr_db` is ``<= snr_db``.

    Args:
        snr_db: (effective) SINR in dB, a float.
        target_bler: code-block error rate the choice must meet, in (0, 1).
        table_index: 38.214 PDSCH table, 1 or 2.
        code_block_size: LDPC information bits per code block the thresholds are read at.

    Returns:
        The MCS, or ``None`` ("no transmission") when even the lowest MCS needs more SNR.
        Non-decreasing in ``snr_db``.
    """
    _check_table_index(table_index)
    _check_bler(target_bler)
    snr_db = float(snr_db)
    if math.isnan(snr_db):
        raise ValueError("snr_db must be a number, got nan")
    chosen = None
    thresholds = _thresholds_db(table_index, float(target_bler), int(code_block_size))
    for mcs, threshold in zip(_mcs_table_cached(table_index), thresholds):
        if threshold <= snr_db:
            chosen = mcs
    return chosen


def code_block_bler(mcs: MCS, sinr_eff: torch.Tensor, block_bits: int, receiver_loss: bool = True) -> torch.Tensor:
    """Error probability of code blocks of ``block_bits`` information bits at effective SINRs
    ``sinr_eff [n]`` (linear): Sionna's PDSCH BLER tables of ``mcs`` at the SINR less this chain's
    receiver loss (the BLER the bit-level chain would see; ``receiver_loss=False``: the bare tables),
    continued below the tables' grid (:func:`_extend_below_table`). ``[n]`` float in [0, 1]."""
    loss_db = receiver_loss_db(mcs, block_bits) if receiver_loss else 0.0
    sinr_table = sinr_eff * 10.0 ** (-loss_db / 10.0)
    bler = _phy_abstraction().get_bler(mcs.index, mcs.table_index, PDSCH_CATEGORY, block_bits, sinr_table)
    return _extend_below_table(bler.clamp(0.0, 1.0).reshape(-1), 10.0 * torch.log10(sinr_table).reshape(-1), mcs,
                               block_bits)


def effective_sinr(mcs: MCS, sinr: torch.Tensor) -> torch.Tensor:
    """EESM average (``sionna.sys.EESM``, beta of ``mcs``) of per-symbol SINRs ``sinr [blocks, symbols]``
    (linear) over each block's symbols -> ``[blocks]`` (linear)."""
    # EESM layout [..., num_ofdm_symbols, num_subcarriers, num_ut, num_streams]: symbols on one axis.
    eesm_input = sinr.reshape(-1, sinr.shape[-1], 1, 1, 1)
    mcs_index = torch.full((eesm_input.shape[0], 1), mcs.index, dtype=torch.int32)
    return _eesm()(eesm_input, mcs_index, mcs_table_index=mcs.table_index).reshape(-1)
