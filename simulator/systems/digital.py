"""The conventional digital chains as simulator systems (the same tasks, channels, allocator and accounting).

- ``digital_source`` (:class:`DigitalSourceSystem`, every task): the BS sends the source itself
  (the image file as stored, PNG, and the UTF-8 question or text) through the 5G LDPC + QAM chain
  at the MCS the allocator picks for the user's SNR; the user runs the same MLLM locally.
- ``digital_answer`` (:class:`DigitalAnswerSystem`, every task): the BS runs the MLLM and sends
  the answer's UTF-8 bytes through the same chain.

Neither shares semantics between users; each user gets its own unicast stream.

Digital outcome: link adaptation picks the MCS for the user's SNR at a code-block error target
(``baselines.digital_target_bler``, 0.1 as in 5G); code blocks that fail their CRC are sent again
(ARQ: a fresh channel draw, no soft combining) up to ``baselines.digital_max_transmissions``
times in all; each round adds its symbols and at least one slot of air time. A payload with a
block still missing after that is lost: a corrupted PNG cannot be decoded and a corrupted text is
not acted on, so the task fails (empty prediction). When it arrives, the user's MLLM sees exactly
the BS's input and its output equals the BS's own (the M4SC codec's generation is reused).
``link: bits`` decodes every code block (Sionna LDPC); ``link: abstraction`` draws block errors
from Sionna's PHY-abstraction BLER tables instead (faster, for large sweeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from simulator.interface import BatchPlan, Delivery, Link, System, SystemContext
from simulator.links import build_channel
from simulator.systems.m4sc import M4SCSystem

if TYPE_CHECKING:
    from simulator.workload import Task

__all__ = ["DigitalSourceSystem", "DigitalAnswerSystem"]



@dataclass
class _DigitalBatch:
    payloads: list[bytes]
    reference_texts: list[str]


class _DigitalSystem(System):
    """Shared part of the digital baselines: a byte payload per task through the 5G chain.

    Args:
        m4sc: the run's :class:`M4SCSystem` (its generation gives the MLLM's outputs).
        channel: the scenario's channel with a zero-forcing equaliser (the demapper needs unbiased
            symbols and their noise variance).
        link_model: ``"bits"`` (LDPC decoding) or ``"abstraction"`` (BLER tables).
        image_dir: folder of the task images.
    """

    payload_unit = "bits"
    uses_mllm = True

    def __init__(self, m4sc: M4SCSystem, channel, link_model: str = "bits", image_dir: Path | None = None,
                 max_transmissions: int = 4):
        if link_model not in ("bits", "abstraction"):
            raise ValueError(f"unknown digital link model {link_model!r}; choose bits or abstraction")
        if max_transmissions < 1:
            raise ValueError(f"max_transmissions must be >= 1, got {max_transmissions}")
        self.m4sc = m4sc
        self.channel = channel
        self.link_model = link_model
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.max_transmissions = int(max_transmissions)

    @classmethod
    def build(cls, context: SystemContext) -> "_DigitalSystem":
        m4sc = M4SCSystem.build(context)
        channel, _, _ = build_channel(context.scenario, context.symbols_per_token, equalizer="zf")
        settings = context.scenario.baselines
        return cls(m4sc, channel, settings.digital_link, context.image_dir, settings.digital_max_transmissions)

    def describe(self) -> dict:
        return {**super().describe(), "link_model": self.link_model, "max_transmissions": self.max_transmissions,
                "combining": "none (ARQ)"}

    def payload(self, task: "Task") -> bytes:
        raise NotImplementedError

    def prepare(self, tasks, on_progress=None) -> None:
        self.m4sc.prepare(tasks, on_progress)

    def encode(self, tasks: list["Task"]) -> _DigitalBatch:
        return _DigitalBatch([self.payload(t) for t in tasks], [self.m4sc.output_text(t) for t in tasks])

    def plan(self, encoded: _DigitalBatch, variant) -> BatchPlan:
        rows = len(encoded.payloads)
        return BatchPlan(broadcast_symbols=0, broadcast_rows=[], unicast_symbols=[0] * rows, overhead_bits=[0] * rows,
                         public_symbol_share=[0.0] * rows, tokens=[0] * rows, public_tokens=[0] * rows,
                         payload_bits=[8 * len(p) for p in encoded.payloads])

    def _send(self, payload: bytes, stream, user: int, link: Link) -> tuple[bool, int, int]:
        """Send ``payload`` to ``user`` at the stream's MCS with per-code-block ARQ.

        Returns ``(arrived, retransmitted_symbols, retransmission_rounds)``.
        """
        from channels.digital import DigitalChain, bytes_to_bits

        chain = DigitalChain.from_mcs(stream.mcs)
        snr_db = link.snr_db[user:user + 1]
        generator = link.unicast_streams[user]
        bits = bytes_to_bits(payload).reshape(1, 1, -1)
        segmentation = chain.plan(bits.shape[-1])
        symbols_per_block = segmentation.num_symbols // segmentation.num_codewords
        missing = torch.ones(segmentation.num_codewords, dtype=torch.bool)
        retransmitted = rounds = 0
        for attempt in range(self.max_transmissions):
            if attempt:
                retransmitted += int(missing.sum()) * symbols_per_block
                rounds += 1
            # Every round draws the whole payload's channel (fixed stream use); only missing blocks count.
            if self.link_model == "abstraction":
                failed = chain.transmit_abstract(bits.shape[-1], self.channel, snr_db, stream=[generator],
                                                 generator=generator).block_errors[0, 0]
            else:
                failed = ~chain.transmit(bits, self.channel, snr_db, stream=[generator]).crc_ok[0, 0]
            missing &= failed
            if not missing.any():
                return True, retransmitted, rounds
        return False, retransmitted, rounds

    @torch.inference_mode()
    def deliver(self, encoded: _DigitalBatch, plan: BatchPlan, users: list[int], link: Link,
                allocation=None) -> list[Delivery]:
        if allocation is None:
            raise ValueError(f"system {self.name!r} needs the allocation (its MCS per user)")
        grid = allocation.grid
        deliveries = []
        for row, user in enumerate(users):
            ok, extra, rounds = self._send(encoded.payloads[row], allocation.unicast[user], user, link)
            # A round takes the whole band for this user's blocks (optimistic) and at least one slot.
            slots = max(rounds, -(-extra // grid.re_per_slot))
            reference = encoded.reference_texts[row]
            deliveries.append(Delivery(prediction=reference if ok else "", reference_prediction=reference,
                                       retransmitted_symbols=extra, retransmission_time_s=slots * grid.slot_duration_s))
        return deliveries


class DigitalSourceSystem(_DigitalSystem):
    """The source over the digital chain; the user runs the MLLM (see the module docstring)."""

    name = "digital_source"

    def payload(self, task: "Task") -> bytes:
        data = b""
        if task.image is not None:
            if self.image_dir is None:
                raise ValueError("digital_source needs the task images' folder")
            data += (self.image_dir / task.image).read_bytes()
        if task.input_text:
            data += task.input_text.encode("utf-8")
        return data or b"\n"


class DigitalAnswerSystem(_DigitalSystem):
    """The BS's answer text over the digital chain (see the module docstring)."""

    name = "digital_answer"

    def payload(self, task: "Task") -> bytes:
        return self.m4sc.output_text(task).encode("utf-8") or b"\n"
