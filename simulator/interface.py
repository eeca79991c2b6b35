"""The interface every communication system implements, and what flows through it.

A system turns a batch of users' tasks into what goes on the air and what each user decodes:

0. :meth:`System.prepare` (optional): per-task SNR-independent work ahead of the sweep (M4SC:
   the MLLM generation of every distinct task, in large batches),
1. :meth:`System.encode` (SNR-independent; the engine caches it per batch),
2. :meth:`System.plan` (what is broadcast once and what is unicast per user, for one sharing
   variant; also SNR-independent and cached) -> :class:`BatchPlan` with the accounting,
3. :meth:`System.deliver` (channel + receiver at one sweep point, after the BS has allocated the
   plan's payloads) -> one :class:`Delivery` per user.

A system serves only the task kinds in its ``tasks`` (the engine gives it no others), and only a
system with ``shares_semantics`` runs under the scenario's sharing thresholds (the others run
once, as "sharing off"). The systems themselves are in :mod:`simulator.systems`.

Physical-layer randomness: user ``u``'s unicast symbols draw fading and noise only from
``Link.unicast_streams[u]`` and its reception of the broadcast only from
``Link.broadcast_streams[u]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from channels.flat import Channel
from simulator.scenario import TASKS

if TYPE_CHECKING:
    from simulator.scenario import Scenario, SharingVariant
    from simulator.workload import Task

__all__ = ["Link", "BatchPlan", "Delivery", "System", "SystemContext"]


@dataclass
class Link:
    """The physical layer of one sweep point, for all ``U`` users of the scenario.

    Attributes:
        channel: a :func:`channels.registry.make_channel` block (:class:`channels.flat.Channel`);
            called with ``x [1, U, n]`` complex64 and per-user ``no`` ``[U]``.
        noise_power: ``[U]`` float32, complex noise power ``N0`` per user (linear, Es = 1).
        snr_db: ``[U]`` float32, each user's SNR in dB (Es/N0).
        broadcast_streams: ``U`` generators for the users' reception of the broadcast.
        unicast_streams: ``U`` generators for the users' own (unicast) streams.
        repeat_streams: ``U`` generators for second receptions of repeated symbols (None: the
            unicast streams), so that repeating leaves the first receptions' draws as without it.
    """

    channel: Channel
    noise_power: torch.Tensor
    snr_db: torch.Tensor
    broadcast_streams: list[torch.Generator]
    unicast_streams: list[torch.Generator]
    repeat_streams: list[torch.Generator] | None = None

    @property
    def num_users(self) -> int:
        return int(self.noise_power.shape[0])


@dataclass
class BatchPlan:
    """What one batch puts on the air (SNR-independent). Lists are per batch row (one task each).

    Attributes:
        broadcast_symbols: complex symbols of the common stream, counted once.
        broadcast_rows: rows that must decode the broadcast.
        unicast_symbols: complex symbols of each row's own stream.
        overhead_bits: side-information bits of each row (public-token map).
        public_symbol_share: each row's share of ``broadcast_symbols`` (a public vector's symbols are
            split evenly among the users sharing it; the shares sum to ``broadcast_symbols``).
        tokens: output tokens of each row.
        public_tokens: of those, how many arrive through the broadcast.
        token_symbols: symbol-coded systems: each row's symbols per token summed over its tokens
            (public ones at their vector's rate), for ``symbols_per_token_mean``; None otherwise.
        detail: system-specific state for :meth:`System.deliver`.
        payload_bits: digital systems: each row's information bits (what the allocator is asked to
            carry; the symbols it needs depend on the MCS it picks). None for analog systems.
    """

    broadcast_symbols: int
    broadcast_rows: list[int]
    unicast_symbols: list[int]
    overhead_bits: list[int]
    public_symbol_share: list[float]
    tokens: list[int]
    public_tokens: list[int]
    detail: Any = None
    payload_bits: list[int] | None = None
    token_symbols: list[int] | None = None


@dataclass
class Delivery:
    """What one user ends up with for one task.

    Attributes:
        prediction: the decoded output text.
        reference_prediction: the BS's own (noise-free) output text.
        token_accuracy: fraction of the BS's output tokens the user recovered (NaN if not token based).
        sequence_recovered: 1.0 if every token was recovered, else 0.0 (NaN if not token based).
        retransmitted_symbols: complex symbols sent again after errors (digital ARQ), beyond the
            first transmission the allocation covers.
        retransmission_time_s: air time those retransmissions add.
    """

    prediction: str
    reference_prediction: str
    token_accuracy: float = math.nan
    sequence_recovered: float = math.nan
    retransmitted_symbols: int = 0
    retransmission_time_s: float = 0.0


@dataclass
class SystemContext:
    """What a system builder may use.

    Attributes:
        scenario: the validated scenario.
        codec: the loaded M4SC codec (:class:`simulator.models.mllm.M4SCModel`) or None.
        load_image: ``filename -> [3, H, W]`` float32 in [0, 1] at the codec's image size.
        max_new_tokens: generation limit ``T`` (tokens per answer).
        device: torch device of the codec.
        image_dir: folder of the task images (the digital source sends their files), or None.
        symbols_per_token: the codec's ``c`` (complex symbols per token).
        load_baseline: ``(kind, folder or None) -> model``: the baseline checkpoints (None: the
            shipped one); callers may cache.
        shared: objects that systems of one run share (e.g. the M4SC generation used by the
            digital baselines), keyed by name.
        rate_table: the codec's calibrated :class:`simulator.adaptation.RateTable` (``snr`` mode) or None.
    """

    scenario: "Scenario"
    codec: Any
    load_image: Callable[[str], torch.Tensor]
    max_new_tokens: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    image_dir: Any = None
    symbols_per_token: int = 0
    load_baseline: Callable[[str, str | None], Any] | None = None
    shared: dict = field(default_factory=dict)
    rate_table: Any = None


class System(ABC):
    """A BS-to-users communication system (see the module docstring for the three steps).

    Class attributes:
        name: registry name (the ``system`` column of the results).
        payload_unit: ``"symbols"`` (analog: payloads in complex symbols) or ``"bits"`` (digital:
            :attr:`BatchPlan.payload_bits`; the allocator picks the MCS).
        tasks: the task kinds this system serves.
        shares_semantics: whether the plan depends on the sharing variant.
        uses_mllm: whether :meth:`prepare` runs the run's MLLM (one generation per distinct task,
            shared between the systems that use it).
        adapts_rate: whether the plan depends on the scenario's ``adaptation`` settings
            (:meth:`adapt`); the others run once, as ``fixed``.
    """

    name: ClassVar[str] = ""
    payload_unit: ClassVar[str] = "symbols"
    tasks: ClassVar[tuple[str, ...]] = TASKS
    shares_semantics: ClassVar[bool] = False
    uses_mllm: ClassVar[bool] = False
    adapts_rate: ClassVar[bool] = False

    def prepare(self, tasks: list["Task"], on_progress: Callable[[int], None] | None = None) -> None:
        """Optionally precompute per-task, SNR-independent work for ``tasks`` (default: nothing)."""

    @abstractmethod
    def encode(self, tasks: list["Task"]) -> Any:
        """Source/semantic encoding of a batch (one task per row); SNR-independent."""

    @abstractmethod
    def plan(self, encoded: Any, variant: "SharingVariant") -> BatchPlan:
        """Broadcast/unicast split and accounting of an encoded batch for one sharing variant."""

    @abstractmethod
    def deliver(self, encoded: Any, plan: BatchPlan, users: list[int], link: Link, allocation=None) -> list[Delivery]:
        """Transmit through ``link`` and decode; ``users[row]`` is row's scenario user index.
        ``allocation``: the :class:`channels.allocation.Allocation` of this batch (its MCS per
        stream in digital mode)."""

    def adapt(self, encoded: Any, plan: BatchPlan, snr_db: torch.Tensor, setting) -> BatchPlan:
        """The plan with rates chosen by ``setting`` (:class:`simulator.scenario.AdaptationSetting`)
        for rows whose users report ``snr_db [rows]`` (dB). Default: the plan unchanged (``fixed``)."""
        return plan

    def describe(self) -> dict:
        """Settings worth recording in the manifest."""
        return {"name": self.name, "payload_unit": self.payload_unit, "tasks": list(self.tasks)}
