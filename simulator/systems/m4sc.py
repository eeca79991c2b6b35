"""``m4sc``: the paper's system (Section III-C) as a :class:`~simulator.interface.System`.

The BS's MLLM generates each user's answer, the semantic comparator (:mod:`simulator.sharing`)
splits the per-token semantic vectors into a public set (broadcast once, received by every user
that needs it through its own channel) and private residues (unicast), the channel encoder maps
each vector to ``c`` complex symbols (``Es = 1``; fewer under rate adaptation,
:mod:`simulator.adaptation`), and each user's receiver (channel decoder + LM head) recombines and
decodes.

Unicast transmissions always occupy a fixed token grid of ``max_new_tokens x c`` symbols per user
(unused positions carry zeros), so the draws a token sees do not depend on the other users or on
the sharing decision: with no public tokens, sharing at threshold 1.0 draws exactly the noise of
sharing off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from simulator.interface import BatchPlan, Delivery, Link, System, SystemContext

if TYPE_CHECKING:
    from simulator.scenario import SharingVariant
    from simulator.workload import Task

__all__ = ["M4SCSystem"]


@dataclass
class _EncodedBatch:
    """M4SC's SNR-independent part of a batch: the transmission and the BS's own texts."""

    transmission: Any  # simulator.models.transceiver.Transmission, on CPU
    reference_texts: list[str]
    kinds: list[str] | None = None  # each row's task (vqa, caption, classify)


@dataclass
class _SharedBatch:
    """A sharing plan with the broadcast's symbols: ``public_symbols [P, c]`` complex64. Adapted
    plans also carry the unicast symbols at their rates (``private_symbols [rows, T, c]``, zero after
    each token's ``k``), the rate each row decodes each token at (``decode_rates [rows, T]``) and how
    many of a private token's first symbols go twice (``repeats``, ``k > c``); None: every token at ``c``."""

    sharing: Any  # simulator.sharing.SharingPlan
    public_symbols: torch.Tensor
    private_symbols: torch.Tensor | None = None
    decode_rates: torch.Tensor | None = None
    repeats: torch.Tensor | None = None  # [rows, T] int64: a private token's first symbols sent twice (k - c)


def _public_shares(sharing, public_rates: torch.Tensor) -> list[float]:
    """Each row's share of the broadcast symbols: a public vector's ``public_rates[p]`` symbols split
    evenly among the users that share it."""
    shares = []
    for row in range(sharing.public_mask.shape[0]):
        used = torch.unique(sharing.public_index[row][sharing.public_mask[row]])
        shares.append(float(sum(int(public_rates[p]) / int(sharing.public_users[p]) for p in used.tolist())))
    return shares


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
        self.device = next(codec.parameters()).device
        self.generation_batch_size = int(generation_batch_size)
        self.rate_table = rate_table
        # importance adaptation: token recovery per (batch, SNRs), shared by the settings and sharing
        # variants that serve the same batch at one sweep point; oldest entries go first.
        self._recovery: dict[tuple, tuple] = {}
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

    @classmethod
    def for_codec(cls, name: str, codec, context: SystemContext, rate_table=None) -> "M4SCSystem":
        """Another codec compared side by side with the run's (scenario key ``codecs``), as system ``name``."""
        system = cls(codec, context.load_image, context.scenario.model.max_new_tokens or codec.config.max_new_tokens,
                     context.scenario.model.generation_batch_size, rate_table)
        system.name = name
        return system

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
        sent = self.transmitter.send([(t.kind, t.input_text, self.load_image(t.image) if t.image is not None else None)
                                      for t in tasks], self.max_new_tokens)
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
        return _EncodedBatch(sent, [r[4] for r in rows], [t.kind for t in tasks])

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
        tokens = sent.token_mask.sum(-1)
        public_tokens = public_mask.sum(-1)
        return BatchPlan(
            broadcast_symbols=sharing.num_public * c,
            broadcast_rows=[r for r in range(rows) if bool(public_mask[r].any())],
            unicast_symbols=[int(n) * c for n in sharing.private_mask.sum(-1).tolist()],
            overhead_bits=[int(b) for b in sharing.overhead_bits.tolist()],
            public_symbol_share=_public_shares(sharing, torch.full((sharing.num_public,), c)),
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

        from simulator.adaptation import candidate_rates, decide_rates
        from simulator.sharing import recombine

        if setting.mode == "fixed":
            return plan
        sent, sharing = encoded.transmission, plan.detail.sharing
        rates = candidate_rates(self.codec.config, setting)
        recovery = self._token_recovery(encoded, snr_db, rates) if setting.mode == "importance" else None
        decision = decide_rates(setting, self.codec, self.rate_table, sent.hidden, sharing.private_mask,
                                sharing.public_vectors, sharing.public_index, snr_db, recovery, encoded.kinds)
        weight = self.codec.channel_encoder.linear.weight
        c = self.symbols_per_token
        coded = decision.private_rates.clamp(min=1, max=c)  # positions not sent are zeroed in deliver()
        private_symbols = self.codec.channel_encoder(sent.hidden.to(weight.device), coded.to(weight.device)).cpu()
        public_symbols = plan.detail.public_symbols
        if sharing.num_public:
            public_symbols = self.codec.channel_encoder(sharing.public_vectors.to(weight.device),
                                                        decision.public_rates.to(weight.device)).cpu()
        public_rates = decision.public_rates
        rows = len(plan.tokens)
        # A public token is decoded at its vector's k, or (snr policy) from the first k of the row's own.
        public_decode = public_rates.view(1, -1).expand(rows, -1) if decision.row_rates is None else \
            decision.row_rates.view(-1, 1).expand(-1, sharing.num_public)
        sent_rates = recombine(public_decode, decision.private_rates, sharing)  # k > c: repeats included
        repeats = (decision.private_rates - c).clamp(min=0)
        return replace(
            plan,
            broadcast_symbols=int(public_rates.sum()),
            unicast_symbols=[int(n) for n in decision.private_rates.sum(-1).tolist()],
            overhead_bits=[b + s for b, s in zip(plan.overhead_bits, decision.signalling_bits)],
            public_symbol_share=_public_shares(sharing, public_rates),
            token_symbols=[int(n) for n in (sent_rates * sent.token_mask).sum(-1).tolist()],
            detail=_SharedBatch(sharing, public_symbols, private_symbols, sent_rates.clamp(max=c),
                                repeats if bool(repeats.any()) else None),
        )

    def _token_recovery(self, encoded: _EncodedBatch, snr_db: torch.Tensor, rates: list[int]) -> torch.Tensor:
        """:func:`simulator.token_recovery.token_recovery` of ``encoded``'s tokens at ``snr_db`` and ``rates``, cached."""
        from simulator.adaptation import token_recovery

        key = (id(encoded), tuple(rates))
        cached = self._recovery.get(key)
        if cached is not None and cached[0] is encoded and torch.equal(cached[1], snr_db):
            return cached[2]
        sent = encoded.transmission
        recovery = token_recovery(self.codec, sent.hidden, sent.token_mask, snr_db, rates)
        self._recovery.pop(key, None)
        self._recovery[key] = (encoded, snr_db.clone(), recovery)
        while len(self._recovery) > 4096:
            self._recovery.pop(next(iter(self._recovery)))
        return recovery

    # ---- 3. deliver --------------------------------------------------------------------------
    def _unicast(self, symbols: torch.Tensor, users: list[int], link: Link, streams):
        """``symbols [rows, T, c]`` on their users' fixed ``max_new_tokens x c`` grids (zeros elsewhere)
        through ``link``'s channel, drawing from ``streams``: its ChannelOutput ``[1, U, grid * c]``."""
        x = torch.zeros(1, link.num_users, self.max_new_tokens, symbols.shape[-1], dtype=torch.complex64)
        x[0, users, :symbols.shape[1]] = symbols
        return link.channel(x.reshape(1, link.num_users, -1), link.noise_power, streams)

    def _rows(self, grid_symbols: torch.Tensor, users: list[int], tokens: int) -> torch.Tensor:
        """``[1, U, grid * c]`` -> the rows' first ``tokens`` tokens, ``[rows, tokens, c]``."""
        return grid_symbols.reshape(grid_symbols.shape[1], self.max_new_tokens, -1)[users, :tokens]

    def _with_repeats(self, private: torch.Tensor, repeats: torch.Tensor, unicast, received: torch.Tensor,
                      users: list[int], link: Link) -> torch.Tensor:
        """The private tokens' equalised symbols ``[rows, T, c]`` (``received`` those of the first
        transmission) when the first ``repeats [rows, T]`` symbols of some go a second time: a second
        unicast transmission on the same grid, combined with the first by maximum-ratio combining
        (:func:`channels.flat.combine_receptions`)."""
        from channels.flat import combine_receptions
        from simulator.models.channel_codec import prefix_mask

        twice = prefix_mask(repeats, private.shape[-1])
        again = self._unicast(torch.where(twice, private, torch.zeros_like(private)), users, link,
                              link.repeat_streams or link.unicast_streams)
        combined = combine_receptions(unicast, again, link.noise_power, getattr(link.channel, "equalizer", "mmse"))
        return torch.where(twice, self._rows(combined, users, private.shape[1]), received)

    @torch.inference_mode()
    def deliver(self, encoded: _EncodedBatch, plan: BatchPlan, users: list[int], link: Link,
                allocation=None) -> list[Delivery]:
        from channels.flat import broadcast
        from simulator.sharing import recombine

        sent, shared = encoded.transmission, plan.detail
        sharing = shared.sharing
        rows, tokens, c = sent.symbols.shape
        num_users = link.num_users

        # Unicast: each user's private tokens on its fixed T x c grid (zeros elsewhere; an adapted
        # plan's tokens are already zero after their k-th symbol).
        symbols = sent.symbols if shared.private_symbols is None else shared.private_symbols
        private = torch.where(sharing.private_mask.unsqueeze(-1), symbols, torch.zeros_like(symbols))
        unicast = self._unicast(private, users, link, link.unicast_streams)
        private_received = self._rows(unicast.x_hat, users, tokens)
        if shared.repeats is not None:
            private_received = self._with_repeats(private, shared.repeats, unicast, private_received, users, link)

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
        if shared.decode_rates is not None:
            rates = shared.decode_rates.clamp(min=1).to(self.device)
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
