"""The M4SC link split (the paper's Fig. 3): the base station runs the whole MLLM and
the channel encoder; each user holds only the channel decoder and the LM head (plus tokenizer).

``Transmitter``: users' images + prompts -> greedy generation -> per-token semantic vectors ->
channel encoder -> complex symbols ``[batch, T, c]`` (Es = 1 per symbol) with a token mask.
``Receiver``: received symbols -> channel decoder -> LM head -> tokens -> text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from simulator.models.channel_codec import ChannelDecoder
from simulator.models.mllm import M4SCModel

__all__ = ["Transmission", "Transmitter", "Receiver"]


@dataclass
class Transmission:
    """What the BS sends for a batch of users.

    Attributes:
        tokens: ``[batch, T]`` int64 the BS's output tokens (the reference the receiver should recover).
        token_mask: ``[batch, T]`` bool, True where a token is sent.
        hidden: ``[batch, T, d]`` float semantic vectors (input of the channel encoder and the comparator).
        symbols: ``[batch, T, c]`` complex64 channel symbols, zero where ``token_mask`` is False.
    """

    tokens: torch.Tensor
    token_mask: torch.Tensor
    hidden: torch.Tensor
    symbols: torch.Tensor

    @property
    def symbols_per_user(self) -> torch.Tensor:
        """``[batch]`` int64 complex channel uses each user's answer needs."""
        return self.token_mask.sum(-1) * self.symbols.shape[-1]


class Transmitter(nn.Module):
    """Base-station side: the full MLLM plus the channel encoder."""

    def __init__(self, model: M4SCModel):
        super().__init__()
        self.model = model

    @torch.inference_mode()
    def forward(self, prompts: list[str], pixel_values: torch.Tensor | None = None,
                has_image: torch.Tensor | None = None, max_new_tokens: int | None = None,
                stop_at_eos: bool = True) -> Transmission:
        """Encode a batch of users' tasks.

        Args:
            prompts: ``batch`` rendered instruction prompts.
            pixel_values: ``[batch, 3, H, W]`` images (None if no task has one).
            has_image: ``[batch]`` bool, which samples use their image.
            stop_at_eos: False decodes ``max_new_tokens`` steps whatever the tokens (benchmarks).
        """
        device = next(self.model.parameters()).device
        input_ids, attention_mask = self.model.tokenize(prompts, device)
        if pixel_values is not None:
            pixel_values = pixel_values.to(device)
            has_image = None if has_image is None else has_image.to(device)
        generation = self.model.generate(input_ids, attention_mask, pixel_values, has_image, max_new_tokens,
                                         stop_at_eos=stop_at_eos)
        symbols = self.model.channel_encoder(generation.hidden)
        symbols = symbols * generation.token_mask.unsqueeze(-1)
        return Transmission(generation.tokens, generation.token_mask, generation.hidden, symbols)

    def inputs(self, tasks: list[tuple[str, str | None, torch.Tensor | None]]):
        """The forward pass's inputs for users' tasks given as ``(kind, input text, image)``: the one
        place prompts are rendered (the codec's instruction for ``kind``) and images prepared. An image
        is ``[3, H, W]`` float in [0, 1] (resized to the vision encoder's size if it differs) or None
        (text task: zeros, masked). Returns ``(prompts, pixel_values [batch, 3, S, S] in [-1, 1] or
        None, has_image [batch] bool or None)``."""
        from simulator.data.templates import render_prompt

        instructions = self.model.config.instructions
        prompts = [render_prompt(kind, text, "", instructions.get(kind)) for kind, text, _ in tasks]
        pixel_values = has_image = None
        if any(image is not None for _, _, image in tasks):
            size = int(self.model.vision.config.image_size)
            pixel_values = torch.stack([_resized(image, size) if image is not None else torch.zeros(3, size, size)
                                        for _, _, image in tasks]) * 2 - 1
            has_image = torch.tensor([image is not None for _, _, image in tasks])
        return prompts, pixel_values, has_image

    def send(self, tasks: list[tuple[str, str | None, torch.Tensor | None]], max_new_tokens: int | None = None) -> Transmission:
        """Encode users' tasks given as ``(kind, input text, image)`` (see :meth:`inputs`)."""
        return self(*self.inputs(tasks), max_new_tokens)


def _resized(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image [3, H, W]`` at ``size x size`` (bilinear), itself when it already is."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    return nn.functional.interpolate(image.unsqueeze(0), size=(size, size), mode="bilinear",
                                     align_corners=False).squeeze(0)


class Receiver(nn.Module):
    """User side: channel decoder + LM head + tokenizer, nothing else of the MLLM.

    Args:
        channel_decoder: ``Linear(2c -> d)``.
        lm_head: ``Linear(d -> vocab)`` without bias.
        tokenizer: to turn tokens into text.
        logit_softcap: the LLM's final soft-cap (does not change the argmax; kept for scores).
    """

    def __init__(self, channel_decoder: ChannelDecoder, lm_head: nn.Module, tokenizer, logit_softcap: float | None = None):
        super().__init__()
        self.channel_decoder = channel_decoder
        self.lm_head = lm_head
        self.tokenizer = tokenizer
        self.logit_softcap = logit_softcap

    @classmethod
    def from_model(cls, model: M4SCModel) -> "Receiver":
        """The receiver's share of a trained model (the modules are shared, not copied)."""
        cap = getattr(model.base_llm.config, "final_logit_softcapping", None)
        return cls(model.channel_decoder, model.lm_head, model.tokenizer, cap)

    @torch.inference_mode()
    def forward(self, symbols: torch.Tensor, token_mask: torch.Tensor,
                rates: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """``symbols [batch, T, c]`` complex, ``token_mask [batch, T]`` -> ``tokens [batch, T]`` and texts.
        ``rates [batch, T]``: symbols each token was sent with (nested codec; None: all ``c``)."""
        hidden = self.channel_decoder(symbols, rates)
        logits = self.lm_head(hidden.to(self.lm_head.weight.dtype))
        tokens = logits.argmax(-1)
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else 0
        tokens = torch.where(token_mask, tokens, torch.full_like(tokens, pad))
        texts = []
        if self.tokenizer is not None:
            texts = [self.tokenizer.decode(row[m].tolist(), skip_special_tokens=True).strip()
                     for row, m in zip(tokens, token_mask)]
        return tokens, texts

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
