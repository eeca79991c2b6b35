"""The baselines as simulator systems: same tasks, same channels, same allocator, same accounting.

- ``deepsc`` (:class:`DeepSCSystem`, text classification): the BS sends the text's DeepSC
  semantic symbols (``symbols_per_word`` per word) and the user's receiver classifies them.
- ``deepsc_vqa`` (:class:`DeepSCVQASystem`, VQA): the BS sends the image's and the question's
  DeepSC-VQA symbols (``symbols_per_image_token`` per image token, ``symbols_per_word`` per word)
  and the user's receiver fuses them and answers. In the DeepSC-VQA paper an image user and a text
  user transmit to one receiver; in the M4SC downlink both streams come from the BS. With object
  tokens only the found objects' tokens are sent (and counted); the text-only ablation sends no image.
- ``digital_source`` (:class:`DigitalSourceSystem`, every task): the BS sends the source itself
  (the image file as stored, PNG, and the UTF-8 question or text) through the 5G LDPC + QAM chain
  at the MCS the allocator picks for the user's SNR; the user runs the same MLLM locally.
- ``digital_answer`` (:class:`DigitalAnswerSystem`, every task): the BS runs the MLLM and sends
  the answer's UTF-8 bytes through the same chain.

None of them shares semantics between users (they run once per point, as "sharing off"); each
user gets its own unicast stream.

Digital outcome: link adaptation picks the MCS for the user's SNR at a code-block error target
(``baselines.digital_target_bler``, 0.1 as in 5G); code blocks that fail their CRC are sent again
(ARQ: a fresh channel draw, no soft combining) up to ``baselines.digital_max_transmissions``
times in all; each round adds its symbols and at least one slot of air time. A payload with a
block still missing after that is lost: a corrupted PNG cannot be decoded and a corrupted text is
not acted on, so the task fails (empty prediction). When it arrives, the user's MLLM sees exactly
the BS's input and its output equals the BS's own (the M4SC codec's generation is reused).
``link: bits`` decodes every code block (Sionna LDPC); ``link: abstraction`` draws block errors
from Sionna's PHY-abstraction BLER tables instead (faster, for large sweeps).

Every analog baseline sends a fixed-size grid per user (``max_words`` words, all image tokens;
zeros where nothing is sent), so the fading and noise a symbol sees come from the user's own
stream only, as for M4SC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from simulator.systems import BatchPlan, Delivery, Link, M4SCSystem, System, SystemContext

if TYPE_CHECKING:
    from simulator.engine import Task

__all__ = ["DeepSCSystem", "DeepSCVQASystem", "DigitalSourceSystem", "DigitalAnswerSystem", "SHIPPED_BASELINES"]

logger = logging.getLogger(__name__)

_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
#: Baseline kind -> the checkpoint shipped inside the package.
SHIPPED_BASELINES = {"deepsc": _CHECKPOINTS / "deepsc_tiny", "deepsc_vqa": _CHECKPOINTS / "deepsc_vqa_tiny"}


@dataclass
class _AnalogBatch:
    """An analog baseline's SNR-independent part of a batch.

    ``streams``: the transmissions (one or two :class:`SemanticTransmission`, in grid order);
    ``reference_texts``: the receiver's output without a channel.
    """

    streams: list[Any]
    reference_texts: list[str]
    extra: Any = None

    @property
    def symbols_per_row(self) -> list[int]:
        return [int(n) for n in sum(s.symbols_per_sample for s in self.streams).tolist()]

    @property
    def units_per_row(self) -> list[int]:
        return [int(n) for n in sum(s.unit_mask.sum(1) for s in self.streams).tolist()]


def _analog_plan(encoded: _AnalogBatch) -> BatchPlan:
    rows = len(encoded.reference_texts)
    return BatchPlan(broadcast_symbols=0, broadcast_rows=[], unicast_symbols=encoded.symbols_per_row,
                     overhead_bits=[0] * rows, public_symbol_share=[0.0] * rows, tokens=encoded.units_per_row,
                     public_tokens=[0] * rows, detail=encoded)


def _through_grid(streams: list[Any], grid_sizes: list[int], users: list[int], link: Link) -> list[torch.Tensor]:
    """Send each row's streams on its user's fixed grid (stream k in ``grid_sizes[k]`` symbols) and
    return every stream's equalised symbols, zero where nothing was sent."""
    num_users, rows = link.num_users, len(users)
    x = torch.zeros(1, num_users, sum(grid_sizes), dtype=torch.complex64)
    offsets = [sum(grid_sizes[:k]) for k in range(len(grid_sizes))]
    for stream, offset in zip(streams, offsets):
        n = stream.symbols.shape[1]
        x[0, users, offset:offset + n] = stream.symbols.to(torch.complex64).cpu()
    x_hat = link.channel(x, link.noise_power, link.unicast_streams).x_hat[0, users]
    received = []
    for stream, offset in zip(streams, offsets):
        n = stream.symbols.shape[1]
        part = x_hat[:, offset:offset + n]
        received.append(torch.where(stream.symbol_mask.cpu(), part, torch.zeros_like(part)).reshape(rows, n))
    return received


def _load(context: SystemContext, kind: str):
    if context.load_baseline is None:
        raise ValueError(f"system {kind!r} needs a baseline checkpoint loader")
    folder = getattr(context.scenario.baselines, f"{kind}_checkpoint")
    return context.load_baseline(kind, folder)


# ---- DeepSC --------------------------------------------------------------------------------------
class DeepSCSystem(System):
    """DeepSC text classification through the channel (see the module docstring).

    Args:
        model: a trained :class:`simulator.baselines.DeepSC` (eval mode).
    """

    name = "deepsc"
    payload_unit = "symbols"
    tasks = ("classify",)

    def __init__(self, model):
        self.model = model
        self.symbols_per_word = int(model.config.symbols_per_word)
        self.grid = int(model.config.max_words) * self.symbols_per_word

    @classmethod
    def build(cls, context: SystemContext) -> "DeepSCSystem":
        return cls(_load(context, "deepsc"))

    def describe(self) -> dict:
        return {**super().describe(), "symbols_per_word": self.symbols_per_word,
                "max_words": int(self.model.config.max_words)}

    def _labels(self, received: torch.Tensor, unit_mask: torch.Tensor) -> list[str]:
        device = self.model.device
        features = self.model.receive(received.to(device), unit_mask.to(device))
        logits = self.model.class_logits(features, unit_mask.to(device))
        return [self.model.config.labels[i] for i in logits.argmax(-1).tolist()]

    @torch.inference_mode()
    def encode(self, tasks: list["Task"]) -> _AnalogBatch:
        sent = self.model.transmit([t.input_text or "" for t in tasks])
        return _AnalogBatch([sent], self._labels(sent.symbols, sent.unit_mask))

    def plan(self, encoded: _AnalogBatch, variant) -> BatchPlan:
        return _analog_plan(encoded)

    @torch.inference_mode()
    def deliver(self, encoded: _AnalogBatch, plan: BatchPlan, users: list[int], link: Link,
                allocation=None) -> list[Delivery]:
        sent = encoded.streams[0]
        (received,) = _through_grid([sent], [self.grid], users, link)
        labels = self._labels(received, sent.unit_mask)
        return [Delivery(prediction=p, reference_prediction=r) for p, r in zip(labels, encoded.reference_texts)]


# ---- DeepSC-VQA ----------------------------------------------------------------------------------
class DeepSCVQASystem(System):
    """DeepSC-VQA through the channel (see the module docstring).

    Args:
        model: a trained :class:`simulator.baselines.DeepSCVQA` (eval mode).
        load_image: ``filename -> [3, H, W]`` float in [0, 1] (resized to the model's input here).
    """

    name = "deepsc_vqa"
    payload_unit = "symbols"
    tasks = ("vqa",)

    def __init__(self, model, load_image):
        self.model = model
        self.load_image = load_image
        config = model.config
        self.image_grid = int(model.symbols_per_image)
        self.text_grid = int(config.max_words) * int(config.symbols_per_word)

    @classmethod
    def build(cls, context: SystemContext) -> "DeepSCVQASystem":
        return cls(_load(context, "deepsc_vqa"), context.load_image)

    def describe(self) -> dict:
        config = self.model.config
        vision = config.vision_encoder
        image_user = "none (text-only)" if config.text_only else "cnn" if vision is None else f"siglip {vision.tokens}"
        return {**super().describe(), "symbols_per_image_token": int(config.symbols_per_image_token),
                "image_tokens": int(config.image_tokens), "symbols_per_word": int(config.symbols_per_word),
                "image_user": image_user}

    def _images(self, tasks: list["Task"]) -> torch.Tensor:
        size = int(self.model.config.image_size)
        images = torch.stack([self.load_image(t.image) for t in tasks])
        if images.shape[-1] != size or images.shape[-2] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return images

    def _answers(self, image_received, text_received, masks) -> list[str]:
        device = self.model.device
        text_mask, image_mask = masks
        logits = self.model.receive(image_received.to(device), text_received.to(device), text_mask.to(device),
                                    image_mask.to(device))
        return [self.model.config.answers[i] for i in logits.argmax(-1).tolist()]

    @torch.inference_mode()
    def encode(self, tasks: list["Task"]) -> _AnalogBatch:
        ids, mask = self.model.tokenize([t.input_text or "" for t in tasks])
        sent = self.model.transmit(self._images(tasks), ids, mask)
        masks = (mask, sent.image.unit_mask)
        answers = self._answers(sent.image.symbols, sent.text.symbols, masks)
        return _AnalogBatch([sent.image, sent.text], answers, extra=masks)

    def plan(self, encoded: _AnalogBatch, variant) -> BatchPlan:
        return _analog_plan(encoded)

    @torch.inference_mode()
    def deliver(self, encoded: _AnalogBatch, plan: BatchPlan, users: list[int], link: Link,
                allocation=None) -> list[Delivery]:
        image_received, text_received = _through_grid(encoded.streams, [self.image_grid, self.text_grid], users, link)
        answers = self._answers(image_received, text_received, encoded.extra)
        return [Delivery(prediction=p, reference_prediction=r) for p, r in zip(answers, encoded.reference_texts)]


# ---- digital chains ------------------------------------------------------------------------------
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
        from simulator.engine import build_channel

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
