"""The semantic baselines as simulator systems: same tasks, same channels, same allocator, same accounting.

- ``deepsc`` (:class:`DeepSCSystem`, text classification): the BS sends the text's DeepSC
  semantic symbols (``symbols_per_word`` per word) and the user's receiver classifies them.
- ``deepsc_vqa`` (:class:`DeepSCVQASystem`, VQA): the BS sends the image's and the question's
  DeepSC-VQA symbols (``symbols_per_image_token`` per image token, ``symbols_per_word`` per word)
  and the user's receiver fuses them and answers. In the DeepSC-VQA paper an image user and a text
  user transmit to one receiver; in the M4SC downlink both streams come from the BS. With object
  tokens only the found objects' tokens are sent (and counted); the text-only ablation sends no image.

Neither shares semantics between users (they run once per point, as "sharing off"); each user gets
its own unicast stream. Every analog baseline sends a fixed-size grid per user (``max_words``
words, all image tokens; zeros where nothing is sent), so the fading and noise a symbol sees come
from the user's own stream only, as for M4SC.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from simulator.interface import BatchPlan, Delivery, Link, System, SystemContext

if TYPE_CHECKING:
    from simulator.workload import Task

__all__ = ["DeepSCSystem", "DeepSCVQASystem"]


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
