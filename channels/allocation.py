"""Per-slot resource grid split between one broadcast (common) stream and per-user unicast streams.

A slot is ``num_prbs`` physical resource blocks (PRBs); a PRB is 12 subcarriers x 14 OFDM symbols,
i.e. ``re_per_prb`` resource elements (REs) = complex symbols = channel uses. Numerology ``mu``
sets the subcarrier spacing ``15 kHz * 2^mu`` and the slot duration ``1 ms / 2^mu``.

Every slot, the broadcast stream first reserves the lowest-index PRBs it still needs (at most
``broadcast_share`` of the grid while unicast data is pending, the whole grid otherwise); the
remaining PRBs go to users with pending unicast data by proportional fairness (PF). The PF metric
and its throughput memory come from ``sionna.sys.PFSchedulerSUMIMO`` (one call per slot, one
"OFDM symbol" row of ``num_prbs`` frequency resources, i.e. PRB granularity). Sionna's scheduler
gives every resource to the argmax user even when that user needs only part of the slot, so the
fill is ours: PRBs are handed out in index order to the pending user with the highest Sionna PF
metric until that user's payload fits, then to the next (no PRB wasted on a finished user).

Achievable rate of user ``u`` on PRB ``p`` (the PF input, both modes): ``re_per_prb *
log2(1 + SINR[u, p])`` bits per slot, a channel-quality proxy; the achieved rate fed back next slot
is the sum over the granted PRBs.

Digital mode: payloads are information bits. The broadcast MCS is :func:`channels.link_adaptation.select_mcs`
at the WORST effective SINR among the users that need the common stream; unicast MCS per user at
its own. If no MCS meets the target, the lowest MCS is used and ``meets_target`` is False. Symbols
needed come from :meth:`channels.digital.DigitalChain.num_symbols` (code blocks, CRC, padding).
Analog mode: payloads are complex symbols; no MCS. Effective SINR of a per-PRB SINR profile (for
the MCS choice): the capacity-equivalent ``2^mean(log2(1 + SINR)) - 1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from channels.digital import DigitalChain
from channels.link_adaptation import DEFAULT_CODE_BLOCK_BITS, MCS, mcs_table, select_mcs

__all__ = ["SlotGrid", "StreamAllocation", "Allocation", "ResourceAllocator", "BROADCAST", "IDLE", "MODES",
           "effective_sinr_db"]

logger = logging.getLogger(__name__)

#: ``Allocation.prb_owner`` code of a PRB carrying the broadcast stream.
BROADCAST = -2
#: ``Allocation.prb_owner`` code of an unused PRB.
IDLE = -1
MODES = ("analog", "digital")


def _positive_int(name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SlotGrid:
    """Resource grid of one slot.

    Attributes:
        num_prbs: PRBs per slot (e.g. 51 for 20 MHz at 30 kHz).
        numerology: 5G numerology ``mu`` in 0..6: subcarrier spacing ``15 kHz * 2^mu``.
        symbols_per_slot: OFDM symbols per slot (14).
        subcarriers_per_prb: subcarriers per PRB (12).
        overhead_re_per_prb: REs per PRB per slot not available for data (DMRS, control); 0 default.
        slot_duration_s: slot length in seconds; ``None`` -> ``1e-3 / 2^mu``.
    """

    num_prbs: int = 51
    numerology: int = 1
    symbols_per_slot: int = 14
    subcarriers_per_prb: int = 12
    overhead_re_per_prb: int = 0
    slot_duration_s: float | None = None

    def __post_init__(self):
        _positive_int("num_prbs", self.num_prbs)
        _positive_int("symbols_per_slot", self.symbols_per_slot)
        _positive_int("subcarriers_per_prb", self.subcarriers_per_prb)
        if not isinstance(self.numerology, int) or not 0 <= self.numerology <= 6:
            raise ValueError(f"numerology must be an int in 0..6, got {self.numerology!r}")
        total = self.symbols_per_slot * self.subcarriers_per_prb
        if not isinstance(self.overhead_re_per_prb, int) or not 0 <= self.overhead_re_per_prb < total:
            raise ValueError(f"overhead_re_per_prb must be an int in 0..{total - 1}, got {self.overhead_re_per_prb!r}")
        if self.slot_duration_s is None:
            object.__setattr__(self, "slot_duration_s", 1e-3 / 2**self.numerology)
        elif not (isinstance(self.slot_duration_s, (int, float)) and self.slot_duration_s > 0):
            raise ValueError(f"slot_duration_s must be a positive number of seconds, got {self.slot_duration_s!r}")

    @property
    def subcarrier_spacing_hz(self) -> float:
        return 15e3 * 2**self.numerology

    @property
    def bandwidth_hz(self) -> float:
        """Occupied bandwidth ``num_prbs * 12 * subcarrier spacing`` (Hz)."""
        return self.num_prbs * self.subcarriers_per_prb * self.subcarrier_spacing_hz

    @property
    def re_per_prb(self) -> int:
        """Data REs (complex symbols) per PRB per slot."""
        return self.symbols_per_slot * self.subcarriers_per_prb - self.overhead_re_per_prb

    @property
    def re_per_slot(self) -> int:
        """Data REs (complex symbols) per slot over the whole band."""
        return self.num_prbs * self.re_per_prb


@dataclass
class StreamAllocation:
    """Resources of one stream over the slots of an :class:`Allocation`.

    Attributes:
        name: ``"broadcast"`` or ``"user<u>"``.
        kind: ``"broadcast"`` or ``"unicast"``.
        users: users that must decode this stream.
        payload: size to deliver, in ``payload_unit``.
        payload_unit: ``"symbols"`` (analog) or ``"bits"`` (digital information bits).
        mcs: digital MCS (None in analog mode).
        sinr_db: effective SINR (dB) the MCS was chosen for (worst user for broadcast).
        meets_target: False when even the lowest MCS misses the target BLER at ``sinr_db``.
        num_symbols_needed: complex symbols (REs) the payload occupies (digital: coded, with CRC/padding).
        prbs_per_slot: PRBs granted in each slot, length = ``Allocation.num_slots``.
        num_coded_bits: digital coded bits sent (None in analog mode).
        slot_duration_s: slot length (s).
    """

    name: str
    kind: str
    users: tuple[int, ...]
    payload: int
    payload_unit: str
    mcs: MCS | None
    sinr_db: float
    meets_target: bool
    num_symbols_needed: int
    prbs_per_slot: list[int] = field(default_factory=list)
    num_coded_bits: int | None = None
    slot_duration_s: float = 0.0
    re_per_prb: int = 0

    @property
    def num_prbs(self) -> int:
        """PRBs granted over all slots."""
        return int(sum(self.prbs_per_slot))

    @property
    def num_re(self) -> int:
        """REs (complex symbols) available to the stream, ``>= num_symbols_needed``."""
        return self.num_prbs * self.re_per_prb

    @property
    def air_time_s(self) -> float:
        """``num_slots * slot_duration_s``."""
        return self.num_slots * self.slot_duration_s

    @property
    def num_slots(self) -> int:
        """Slots until the payload is delivered: last slot with PRBs + 1 (0 for an empty payload)."""
        granted = [i for i, n in enumerate(self.prbs_per_slot) if n > 0]
        return granted[-1] + 1 if granted else 0


@dataclass
class Allocation:
    """Result of :meth:`ResourceAllocator.allocate`.

    Attributes:
        grid: the slot grid.
        mode: ``"analog"`` or ``"digital"``.
        broadcast: the common stream, or None without a broadcast payload.
        unicast: one :class:`StreamAllocation` per user (empty payload -> no PRBs).
        prb_owner: ``[num_slots, num_prbs]`` int64: :data:`BROADCAST`, a user index, or :data:`IDLE`.
    """

    grid: SlotGrid
    mode: str
    broadcast: StreamAllocation | None
    unicast: list[StreamAllocation]
    prb_owner: np.ndarray

    @property
    def streams(self) -> list[StreamAllocation]:
        return ([self.broadcast] if self.broadcast is not None else []) + list(self.unicast)

    @property
    def num_slots(self) -> int:
        return int(self.prb_owner.shape[0])

    @property
    def air_time_s(self) -> float:
        """Time until every stream is delivered, ``num_slots * slot_duration_s``."""
        return self.num_slots * self.grid.slot_duration_s


def effective_sinr_db(sinr_db: np.ndarray) -> np.ndarray:
    """Capacity-equivalent SINR over the last axis: ``[..., num_prbs]`` dB -> ``[...]`` dB."""
    sinr = np.power(10.0, np.asarray(sinr_db, dtype=np.float64) / 10.0)
    capacity = np.mean(np.log2(1.0 + sinr), axis=-1)
    return 10.0 * np.log10(np.maximum(np.power(2.0, capacity) - 1.0, 1e-30))


class ResourceAllocator:
    """Broadcast + PF unicast allocation over consecutive slots; PF memory persists across calls.

    Args:
        grid: :class:`SlotGrid`.
        num_users: users served by the base station.
        mode: ``"analog"`` (payloads in complex symbols) or ``"digital"`` (information bits).
        broadcast_share: largest fraction of a slot's PRBs the broadcast reserves while unicast
            data is pending, in (0, 1].
        pf_beta: PF throughput discount factor in (0, 1) (``PFSchedulerSUMIMO.beta``).
        target_bler: code-block error rate the digital MCS choice must meet.
        mcs_table_index: 38.214 PDSCH MCS table (1 or 2).
        max_code_block_bits: LDPC code-block size of the digital chain.
        max_slots: safety cap on the slots of one allocation.
    """

    def __init__(self, grid: SlotGrid, num_users: int, mode: str = "digital", broadcast_share: float = 0.5,
                 pf_beta: float = 0.98, target_bler: float = 0.1, mcs_table_index: int = 1,
                 max_code_block_bits: int = DEFAULT_CODE_BLOCK_BITS, max_slots: int = 100_000):
        if not isinstance(grid, SlotGrid):
            raise ValueError(f"grid must be a SlotGrid, got {type(grid).__name__}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if not (isinstance(broadcast_share, (int, float)) and 0.0 < broadcast_share <= 1.0):
            raise ValueError(f"broadcast_share must be in (0, 1], got {broadcast_share!r}")
        if not (isinstance(pf_beta, (int, float)) and 0.0 < pf_beta < 1.0):
            raise ValueError(f"pf_beta must be in (0, 1), got {pf_beta!r}")
        if not (isinstance(target_bler, (int, float)) and 0.0 < target_bler < 1.0):
            raise ValueError(f"target_bler must be in (0, 1), got {target_bler!r}")
        self.grid = grid
        self.num_users = _positive_int("num_users", num_users)
        self.mode = mode
        self.broadcast_share = float(broadcast_share)
        self.target_bler = float(target_bler)
        self.mcs_table_index = mcs_table_index
        self.max_code_block_bits = max_code_block_bits
        self.max_slots = _positive_int("max_slots", max_slots)
        if mode == "digital":
            mcs_table(mcs_table_index)  # validates the table index early
        self.pf_beta = float(pf_beta)
        self.reset()

    def reset(self) -> None:
        """Forget the PF throughput history (a fresh ``PFSchedulerSUMIMO``)."""
        from sionna.sys import PFSchedulerSUMIMO

        self._scheduler = PFSchedulerSUMIMO(self.num_users, self.grid.num_prbs, 1, beta=self.pf_beta, device="cpu")
        self._rate_last_slot = torch.zeros(self.num_users)

    # ----------------------------------------------------------------------------------------- #
    def _sinr_matrix(self, sinr_db) -> np.ndarray:
        """``[num_users]`` or ``[num_users, num_prbs]`` dB -> ``[num_users, num_prbs]`` float64 dB."""
        sinr = np.asarray(torch.as_tensor(sinr_db).detach().cpu().numpy() if torch.is_tensor(sinr_db) else sinr_db,
                          dtype=np.float64)
        if sinr.shape == (self.num_users,):
            sinr = np.repeat(sinr[:, None], self.grid.num_prbs, axis=1)
        if sinr.shape != (self.num_users, self.grid.num_prbs):
            raise ValueError(f"sinr_db must have shape [{self.num_users}] or [{self.num_users}, {self.grid.num_prbs}], "
                             f"got {list(sinr.shape)}")
        if np.isnan(sinr).any():
            raise ValueError("sinr_db contains nan")
        return sinr

    def _stream(self, name: str, kind: str, users: tuple[int, ...], payload: int, sinr_db: float) -> StreamAllocation:
        if self.mode == "analog":
            return StreamAllocation(name, kind, users, payload, "symbols", None, sinr_db, True, payload,
                                    slot_duration_s=self.grid.slot_duration_s, re_per_prb=self.grid.re_per_prb)
        mcs = select_mcs(sinr_db, self.target_bler, self.mcs_table_index, self.max_code_block_bits)
        meets_target = mcs is not None
        if mcs is None:
            mcs = mcs_table(self.mcs_table_index)[0]
        symbols = coded_bits = 0
        if payload > 0:
            plan = DigitalChain.from_mcs(mcs, max_code_block_bits=self.max_code_block_bits).plan(payload)
            symbols, coded_bits = plan.num_symbols, plan.num_coded_bits
        return StreamAllocation(name, kind, users, payload, "bits", mcs, sinr_db, meets_target, symbols,
                                num_coded_bits=coded_bits, slot_duration_s=self.grid.slot_duration_s,
                                re_per_prb=self.grid.re_per_prb)

    def allocate(self, sinr_db, broadcast_payload: int = 0, broadcast_users: Sequence[int] | None = None,
                 unicast_payloads: Sequence[int] | None = None) -> Allocation:
        """Allocate slots until the broadcast and every unicast payload are delivered.

        Args:
            sinr_db: post-equalisation SINR in dB per user, ``[num_users]`` (wideband) or
                ``[num_users, num_prbs]`` (per PRB); float list, array or tensor.
            broadcast_payload: common-stream size (symbols in analog mode, bits in digital), >= 0.
            broadcast_users: users that need the common stream (default: all).
            unicast_payloads: ``[num_users]`` per-user sizes (same unit), >= 0 (default: none).

        Returns:
            :class:`Allocation`.
        """
        sinr = self._sinr_matrix(sinr_db)
        wideband_db = effective_sinr_db(sinr)
        if not isinstance(broadcast_payload, (int, np.integer)) or broadcast_payload < 0:
            raise ValueError(f"broadcast_payload must be an int >= 0, got {broadcast_payload!r}")
        users = tuple(range(self.num_users)) if broadcast_users is None else tuple(int(u) for u in broadcast_users)
        if any(not 0 <= u < self.num_users for u in users) or len(set(users)) != len(users):
            raise ValueError(f"broadcast_users must be distinct indices in 0..{self.num_users - 1}, got {list(users)}")
        if broadcast_payload > 0 and not users:
            raise ValueError("broadcast_users is empty but broadcast_payload > 0")
        payloads = [0] * self.num_users if unicast_payloads is None else list(unicast_payloads)
        if len(payloads) != self.num_users or any(
                not isinstance(p, (int, np.integer)) or isinstance(p, bool) or p < 0 for p in payloads):
            raise ValueError(f"unicast_payloads must be {self.num_users} ints >= 0, got {payloads!r}")

        broadcast = None
        if broadcast_payload > 0:
            worst = float(min(wideband_db[u] for u in users))
            broadcast = self._stream("broadcast", "broadcast", users, int(broadcast_payload), worst)
        unicast = [self._stream(f"user{u}", "unicast", (u,), int(payloads[u]), float(wideband_db[u]))
                   for u in range(self.num_users)]

        re_per_prb = self.grid.re_per_prb
        num_prbs = self.grid.num_prbs
        # Achievable bits per PRB per slot, [1 ofdm row, num_prbs, num_users] for Sionna's scheduler.
        rate_per_prb = torch.from_numpy(re_per_prb * np.log2(1.0 + np.power(10.0, sinr / 10.0)).T.copy())
        rate_per_prb = rate_per_prb.to(torch.float32).unsqueeze(0)
        remaining_bc = broadcast.num_symbols_needed if broadcast is not None else 0
        remaining = np.array([s.num_symbols_needed for s in unicast], dtype=np.int64)
        owners: list[np.ndarray] = []
        while remaining_bc > 0 or (remaining > 0).any():
            if len(owners) >= self.max_slots:
                raise RuntimeError(f"allocation needs more than max_slots={self.max_slots} slots")
            owner = np.full(num_prbs, IDLE, dtype=np.int64)
            bc_prbs = 0
            if remaining_bc > 0:
                cap = num_prbs if not (remaining > 0).any() else max(1, math.floor(self.broadcast_share * num_prbs))
                bc_prbs = min(cap, math.ceil(remaining_bc / re_per_prb))
                owner[:bc_prbs] = BROADCAST
                remaining_bc -= bc_prbs * re_per_prb
            pending = torch.from_numpy(remaining > 0)
            achieved = torch.zeros(self.num_users)
            if pending.any() and bc_prbs < num_prbs:
                self._scheduler(self._rate_last_slot, rate_per_prb * pending.to(torch.float32))
                metric = self._scheduler.pf_metric[0].clone()  # [num_prbs, num_users]
                for prb in range(bc_prbs, num_prbs):
                    candidates = np.nonzero(remaining > 0)[0]
                    if candidates.size == 0:
                        break
                    user = int(candidates[torch.argmax(metric[prb, candidates]).item()])
                    owner[prb] = user
                    remaining[user] -= re_per_prb
                    achieved[user] += rate_per_prb[0, prb, user]
            self._rate_last_slot = achieved
            owners.append(owner)

        prb_owner = np.stack(owners) if owners else np.zeros((0, num_prbs), dtype=np.int64)
        if broadcast is not None:
            broadcast.prbs_per_slot = [int(n) for n in (prb_owner == BROADCAST).sum(axis=1)]
        for u, stream in enumerate(unicast):
            stream.prbs_per_slot = [int(n) for n in (prb_owner == u).sum(axis=1)]
        logger.debug("allocation: %d slots, broadcast %s", prb_owner.shape[0],
                     None if broadcast is None else broadcast.num_prbs)
        return Allocation(grid=self.grid, mode=self.mode, broadcast=broadcast, unicast=unicast, prb_owner=prb_owner)
