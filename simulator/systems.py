"""Communication systems the simulator compares, behind one interface, and their registry.

A system turns a batch of users' tasks into what goes on the air and what each user decodes:

0. :meth:`System.prepare` (optional): per-task SNR-independent work ahead of the sweep (M4SC:
   the MLLM generation of every distinct task, in large batches),
1. :meth:`System.encode` (SNR-independent; the engine caches it per batch),
2. :meth:`System.plan` (what is broadcast once and what is unicast per user, for one sharing
   variant; also SNR-independent and cached) -> :class:`BatchPlan` with the accounting,
3. :meth:`System.deliver` (channel + receiver at one sweep point, after the BS has allocated the
   plan's payloads) -> one :class:`Delivery` per user.

``"m4sc"`` (:class:`M4SCSystem`) is the paper's system: the BS's MLLM generates each user's answer,
the semantic comparator (:mod:`simulator.sharing`) splits the per-token semantic vectors into a
public set (broadcast once, received by every user that needs it through its own channel) and
private residues (unicast), the channel encoder maps each vector to ``c`` complex symbols
(``Es = 1``), and each user's receiver (channel decoder + LM head) recombines and decodes.
Baselines (:mod:`simulator.baselines.systems`: DeepSC, DeepSC-VQA, the digital chains) subclass
:class:`System` and are registered in :data:`SYSTEMS`. A system serves only the task kinds in its
``tasks`` (the engine gives it no others), and only a system with ``shares_semantics`` runs under
the scenario's sharing thresholds (the others run once, as "sharing off").

Physical-layer randomness: user ``u``'s unicast symbols draw fading and noise only from
``Link.unicast_streams[u]`` and its reception of the broadcast only from
``Link.broadcast_streams[u]``. Unicast transmissions always occupy a fixed token grid of
``max_new_tokens x c`` symbols per user (unused positions carry zeros), so the draws a token sees
do not depend on the other users or on the sharing decision: with no public tokens, sharing at
threshold 1.0 draws exactly the noise of sharing off.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from simulator.scenario import TASKS

if TYPE_CHECKING:
    from simulator.engine import Task
    from simulator.scenario import Scenario, SharingVariant

__all__ = ["Link", "BatchPlan", "Delivery", "System", "SystemContext", "M4SCSystem", "SYSTEMS", "build_system"]

logger = logging.getLogger(__name__)


@dataclass
class Link:
    """The physical layer of one sweep point, for all ``U`` users of the scenario.

    Attributes:
        channel: a :func:`channels.registry.make_channel` block; called with
            ``x [1, U, n]`` complex64 and per-user ``no`` ``[U]``.
        noise_power: ``[U]`` float32, complex noise power ``N0`` per user (linear, Es = 1).
        snr_db: ``[U]`` float32, each user's SNR in dB (Es/N0).
        broadcast_streams: ``U`` generators for the users' reception of the broadcast.
        unicast_streams: ``U`` generators for the users' own (unicast) streams.
    """

    channel: torch.nn.Module
    noise_power: torch.Tensor
    snr_db: torch.Tensor
    broadcast_streams: list[torch.Generator]
    unicast_streams: list[torch.Generator]

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


# ------------------------------------------------------------------------------------------------
@dataclass
class _EncodedBatch:
    """M4SC's SNR-independent part of a batch: the transmission and the BS's own texts."""

    transmission: Any  # simulator.models.transceiver.Transmission, on CPU
    reference_texts: list[str]


@dataclass
class _SharedBatch:
    """A sharing plan with the broadcast's symbols: ``public_symbols [P, c]`` complex64. Adapted
    plans also carry the unicast symbols at their rates (``private_symbols [rows, T, c]``) and the
    rates (``private_rates [rows, T]``, ``public_rates [P]``); None: every token at ``c``."""

    sharing: Any  # simulator.sharing.SharingPlan
    public_symbols: torch.Tensor
    private_symbols: torch.Tensor | None = None
    private_rates: torch.Tensor | None = None
    public_rates: torch.Tensor | None = None


class M4SCSystem(System):
    """The paper's M4SC: MLLM semantic codec + semantic sharing (Section III-C).

    Args:
        codec: :class:`simulator.models.mllm.M4SCModel` (eval mode).
        load_image: ``filename -> [3, H, W]`` float in [0, 1] at the codec's image size.
        max_new_tokens: answer length limit ``T``; unicast grids are ``T x c`` symbols per user.
        generation_batch_size: prompts per MLLM call when tasks are prepared ahead.
    """

    name = "m4sc"
    payload_unit = "symbols"
    shares_semantics = True
    uses_mllm = True
    adapts_rate = True

    def __init__(self, codec, load_image: Callable[[str], torch.Tensor], max_new_tokens: int,
                 generation_batch_size: int = 32, rate_table=None):
        from simulator.models.transceiver import Receiver, Transmitter

        self.codec = codec
        self.transmitter = Transmitter(codec)
        self.receiver = Receiver.from_model(codec)
        self.load_image = load_image
        self.max_new_tokens = int(max_new_tokens)
        self.symbols_per_token = int(codec.config.channel_symbols_per_token)
        self.instructions = dict(codec.config.instructions)
        self.device = next(codec.parameters()).device
        self.generation_batch_size = int(generation_batch_size)
        self.rate_table = rate_table
        # importance adaptation: token recovery per (batch, SNRs), shared by the settings and sharing
        # variants that serve the same batch at one sweep point; oldest entries go first.
        self._recovery: dict[int, tuple] = {}
        tokenizer = codec.tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer is not None else 0
        self._outputs: dict[str, tuple] = {}

    @classmethod
    def build(cls, context: SystemContext) -> "M4SCSystem":
        """The run's one M4SC instance (shared with the digital baselines, which reuse its outputs)."""
        if context.codec is None:
            raise ValueError("system 'm4sc' needs a codec checkpoint")
        if "m4sc" not in context.shared:
            context.shared["m4sc"] = cls(context.codec, context.load_image, context.max_new_tokens,
                                         context.scenario.model.generation_batch_size, context.rate_table)
        return context.shared["m4sc"]

    def output_text(self, task: "Task") -> str:
        """The BS's (noise-free) output text for ``task``, generating it if needed."""
        if task.task_id not in self._outputs:
            self._generate([task])
        return self._outputs[task.task_id][4]

    def describe(self) -> dict:
        return {**super().describe(), "symbols_per_token": self.symbols_per_token,
                "channel_rates": self.codec.config.rates, "max_new_tokens": self.max_new_tokens,
                "profile": self.codec.config.profile}

    # ---- 1. encode ---------------------------------------------------------------------------
    def prepare(self, tasks: list["Task"], on_progress: Callable[[int], None] | None = None) -> None:
        """Generate every distinct task once, ``generation_batch_size`` prompts per call (sorted by
        prompt length to limit padding). A task's output does not depend on the batch it is later
        served in, so batches are assembled from these rows."""
        pending = {t.task_id: t for t in tasks if t.task_id not in self._outputs}
        order = sorted(pending.values(), key=lambda t: (t.image is None, len(t.input_text or ""), t.task_id))
        for start in range(0, len(order), self.generation_batch_size):
            chunk = order[start:start + self.generation_batch_size]
            self._generate(chunk)
            if on_progress is not None:
                on_progress(len(chunk))

    @torch.inference_mode()
    def _generate(self, tasks: list["Task"]) -> None:
        """Run the BS's MLLM + channel encoder on ``tasks`` and keep each row (padded to ``T``)."""
        from simulator.data.templates import render_prompt

        prompts = [render_prompt(t.kind, t.input_text, "", self.instructions.get(t.kind)) for t in tasks]
        pixel_values = has_image = None
        if any(t.image is not None for t in tasks):
            images = [self.load_image(t.image) if t.image is not None else None for t in tasks]
            shape = next(img.shape for img in images if img is not None)
            pixel_values = torch.stack([img if img is not None else torch.zeros(shape) for img in images]) * 2 - 1
            has_image = torch.tensor([img is not None for img in images])
        sent = self.transmitter(prompts, pixel_values, has_image, self.max_new_tokens)
        texts = self.codec.decode_text(sent.tokens, sent.token_mask)
        pad = self.max_new_tokens - sent.tokens.shape[1]
        tokens = torch.nn.functional.pad(sent.tokens.cpu(), (0, pad), value=self._pad_id)
        mask = torch.nn.functional.pad(sent.token_mask.cpu(), (0, pad), value=False)
        hidden = torch.nn.functional.pad(sent.hidden.cpu(), (0, 0, 0, pad))
        symbols = torch.nn.functional.pad(sent.symbols.cpu(), (0, 0, 0, pad))
        for row, task in enumerate(tasks):
            self._outputs[task.task_id] = (tokens[row], mask[row], hidden[row], symbols[row], texts[row])

    def encode(self, tasks: list["Task"]) -> _EncodedBatch:
        """The batch's transmission, assembled from per-task generations (made on demand)."""
        from simulator.models.transceiver import Transmission

        missing = list({t.task_id: t for t in tasks if t.task_id not in self._outputs}.values())
        if missing:
            self._generate(missing)
        rows = [self._outputs[t.task_id] for t in tasks]
        mask = torch.stack([r[1] for r in rows])
        length = max(1, int(mask.sum(-1).max()))
        sent = Transmission(tokens=torch.stack([r[0] for r in rows])[:, :length], token_mask=mask[:, :length],
                            hidden=torch.stack([r[2] for r in rows])[:, :length],
                            symbols=torch.stack([r[3] for r in rows])[:, :length])
        return _EncodedBatch(sent, [r[4] for r in rows])

    # ---- 2. plan -----------------------------------------------------------------------------
    @torch.inference_mode()
    def plan(self, encoded: _EncodedBatch, variant: "SharingVariant") -> BatchPlan:
        from simulator.sharing import SemanticComparator

        sent = encoded.transmission
        threshold = 1.0 if variant.threshold is None else variant.threshold
        sharing = SemanticComparator(threshold, variant.stat_tolerance)(sent.hidden, sent.token_mask, sent.tokens)
        c = self.symbols_per_token
        if sharing.num_public:
            weight = self.codec.channel_encoder.linear.weight
            public_symbols = self.codec.channel_encoder(sharing.public_vectors.to(weight.device)).cpu()
        else:
            public_symbols = torch.zeros(0, c, dtype=torch.complex64)
        rows = sent.tokens.shape[0]
        public_mask = sharing.public_mask
        shares = []
        for row in range(rows):
            used = torch.unique(sharing.public_index[row][public_mask[row]])
            shares.append(float(sum(c / int(sharing.public_users[p]) for p in used.tolist())))
        tokens = sent.token_mask.sum(-1)
        public_tokens = public_mask.sum(-1)
        return BatchPlan(
            broadcast_symbols=sharing.num_public * c,
            broadcast_rows=[r for r in range(rows) if bool(public_mask[r].any())],
            unicast_symbols=[int(n) * c for n in sharing.private_mask.sum(-1).tolist()],
            overhead_bits=[int(b) for b in sharing.overhead_bits.tolist()],
            public_symbol_share=shares,
            tokens=[int(n) for n in tokens.tolist()],
            public_tokens=[int(n) for n in public_tokens.tolist()],
            detail=_SharedBatch(sharing, public_symbols),
            token_symbols=[int(n) * c for n in tokens.tolist()],
        )

    @torch.inference_mode()
    def adapt(self, encoded: _EncodedBatch, plan: BatchPlan, snr_db: torch.Tensor, setting) -> BatchPlan:
        """Rates per :mod:`simulator.adaptation`; symbols and accounting follow them. ``fixed`` returns
        ``plan`` itself, so it is exactly the single-rate system."""
        from dataclasses import replace

        from simulator.adaptation import decide_rates

        if setting.mode == "fixed":
            return plan
        sent, sharing = encoded.transmission, plan.detail.sharing
        recovery = self._token_recovery(encoded, snr_db) if setting.mode == "importance" else None
        decision = decide_rates(setting, self.codec, self.rate_table, sent.tokens, sent.hidden, sharing.private_mask,
                                sharing.public_vectors, sharing.public_index, snr_db, recovery)
        weight = self.codec.channel_encoder.linear.weight
        coded = decision.private_rates.clamp(min=1)  # positions not sent are zeroed in deliver()
        private_symbols = self.codec.channel_encoder(sent.hidden.to(weight.device), coded.to(weight.device)).cpu()
        public_symbols = plan.detail.public_symbols
        if sharing.num_public:
            public_symbols = self.codec.channel_encoder(sharing.public_vectors.to(weight.device),
                                                        decision.public_rates.to(weight.device)).cpu()
        public_rates = decision.public_rates
        received_rates = self._received_rates(decision.private_rates, public_rates, sharing)
        shares = []
        for row in range(len(plan.tokens)):
            used = torch.unique(sharing.public_index[row][sharing.public_mask[row]])
            shares.append(float(sum(int(public_rates[p]) / int(sharing.public_users[p]) for p in used.tolist())))
        return replace(
            plan,
            broadcast_symbols=int(public_rates.sum()),
            unicast_symbols=[int(n) for n in decision.private_rates.sum(-1).tolist()],
            overhead_bits=[b + s for b, s in zip(plan.overhead_bits, decision.signalling_bits)],
            public_symbol_share=shares,
            token_symbols=[int(n) for n in (received_rates * sent.token_mask).sum(-1).tolist()],
            detail=_SharedBatch(sharing, public_symbols, private_symbols, decision.private_rates, public_rates),
        )

    def _token_recovery(self, encoded: _EncodedBatch, snr_db: torch.Tensor) -> torch.Tensor:
        """:func:`simulator.adaptation.token_recovery` of ``encoded``'s tokens at ``snr_db``, cached."""
        from simulator.adaptation import token_recovery

        cached = self._recovery.get(id(encoded))
        if cached is not None and cached[0] is encoded and torch.equal(cached[1], snr_db):
            return cached[2]
        sent = encoded.transmission
        recovery = token_recovery(self.codec, sent.tokens, sent.hidden, sent.token_mask, snr_db)
        self._recovery.pop(id(encoded), None)
        self._recovery[id(encoded)] = (encoded, snr_db.clone(), recovery)
        while len(self._recovery) > 4096:
            self._recovery.pop(next(iter(self._recovery)))
        return recovery

    @staticmethod
    def _received_rates(private_rates: torch.Tensor, public_rates: torch.Tensor, sharing) -> torch.Tensor:
        """``[rows, T]`` the rate each row receives each token at (public tokens: their vector's)."""
        from simulator.sharing import recombine

        rows = private_rates.shape[0]
        return recombine(public_rates.view(1, -1).expand(rows, -1), private_rates, sharing)

    # ---- 3. deliver --------------------------------------------------------------------------
    @torch.inference_mode()
    def deliver(self, encoded: _EncodedBatch, plan: BatchPlan, users: list[int], link: Link,
                allocation=None) -> list[Delivery]:
        from channels.flat import broadcast
        from simulator.sharing import recombine

        sent, shared = encoded.transmission, plan.detail
        sharing = shared.sharing
        rows, tokens, c = sent.symbols.shape
        grid = self.max_new_tokens
        num_users = link.num_users

        # Unicast: each user's private tokens on its fixed T x c grid (zeros elsewhere; an adapted
        # plan's tokens are already zero after their k-th symbol).
        symbols = sent.symbols if shared.private_symbols is None else shared.private_symbols
        private = torch.where(sharing.private_mask.unsqueeze(-1), symbols, torch.zeros_like(symbols))
        x = torch.zeros(1, num_users, grid, c, dtype=torch.complex64)
        x[0, users, :tokens] = private
        unicast = link.channel(x.reshape(1, num_users, grid * c), link.noise_power, link.unicast_streams)
        private_received = unicast.x_hat.reshape(num_users, grid, c)[users, :tokens]

        # Broadcast: one transmission of the P public vectors, reaching every user through its own
        # channel (every user's broadcast stream advances; the rows that need it keep theirs).
        public_received = torch.zeros(rows, sharing.num_public, c, dtype=torch.complex64)
        if sharing.num_public and plan.broadcast_rows:
            common = broadcast(shared.public_symbols.reshape(1, -1), num_users)
            received = link.channel(common, link.noise_power, link.broadcast_streams).x_hat[0]
            received = received.reshape(num_users, sharing.num_public, c)
            public_received[plan.broadcast_rows] = received[[users[r] for r in plan.broadcast_rows]]

        combined = recombine(public_received, private_received, sharing)
        rates = None
        if shared.private_rates is not None:
            rates = self._received_rates(shared.private_rates, shared.public_rates, sharing).clamp(min=1).to(self.device)
        decoded, texts = self.receiver(combined.to(self.device), sent.token_mask.to(self.device), rates)
        decoded = decoded.cpu()
        deliveries = []
        for row in range(rows):
            mask = sent.token_mask[row]
            count = int(mask.sum())
            correct = int((decoded[row][mask] == sent.tokens[row][mask]).sum())
            deliveries.append(Delivery(
                prediction=texts[row] if texts else "",
                reference_prediction=encoded.reference_texts[row],
                token_accuracy=correct / count if count else 1.0,
                sequence_recovered=float(correct == count),
            ))
        return deliveries


def _baseline(class_name: str) -> Callable[[SystemContext], System]:
    def build(context: SystemContext) -> System:
        from simulator.baselines import systems

        return getattr(systems, class_name).build(context)
    return build


#: ``system:`` name -> builder ``(SystemContext) -> System``.
SYSTEMS: dict[str, Callable[[SystemContext], System]] = {
    "m4sc": M4SCSystem.build,
    "deepsc": _baseline("DeepSCSystem"),
    "deepsc_vqa": _baseline("DeepSCVQASystem"),
    "digital_source": _baseline("DigitalSourceSystem"),
    "digital_answer": _baseline("DigitalAnswerSystem"),
}


def build_system(name: str, context: SystemContext) -> System:
    """The system registered as ``name``; ValueError listing the known ones otherwise."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
    return SYSTEMS[name](context)
