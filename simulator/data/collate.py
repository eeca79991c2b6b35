"""Batch collator for instruction examples: token ids, attention mask and Output-only labels.

Works with any tokenizer-like object whose ``encode(str)`` returns a list of ids (or an object
with ``.ids``, as a ``tokenizers.Tokenizer`` does). The prompt and the target are encoded
separately and concatenated, so the boundary between them is exact.
"""

from __future__ import annotations

from typing import Protocol

import torch

from simulator.data.templates import render_example

__all__ = ["IGNORE_INDEX", "TokenEncoder", "InstructionCollator"]

IGNORE_INDEX = -100


class TokenEncoder(Protocol):
    def encode(self, text: str): ...  # list[int] or an object with .ids


def _ids(tokenizer: TokenEncoder, text: str) -> list[int]:
    encoded = tokenizer.encode(text)
    return list(getattr(encoded, "ids", encoded))


class InstructionCollator:
    """Collate examples ``{"task", "input_text", "output", "metadata"?, "image"?}`` into

    - ``input_ids``      ``[batch, T]`` int64, right-padded with ``pad_id``
    - ``attention_mask`` ``[batch, T]`` int64, 1 on real tokens
    - ``labels``         ``[batch, T]`` int64, the Output tokens and the EOS after them;
      ``IGNORE_INDEX`` (-100) on Instruction/Input/Metadata tokens and on padding
    - ``has_image``      ``[batch]`` bool, which samples carry an image
    - ``images``         ``[num_with_image, 3, H, W]`` float32 (in batch order) or None
    - ``prompt_lengths`` ``[batch]`` int64, tokens before the Output part

    ``max_length`` truncates the prompt from the left (the Output is always kept whole);
    ``with_target=False`` gives prompts only (for generation), labels all ignored.
    """

    def __init__(self, tokenizer: TokenEncoder, pad_id: int, eos_id: int, bos_id: int | None = None,
                 max_length: int | None = None, instruction_overrides: dict[str, str] | None = None,
                 with_target: bool = True) -> None:
        self.tokenizer = tokenizer
        self.pad_id, self.eos_id, self.bos_id = pad_id, eos_id, bos_id
        self.max_length = max_length
        self.instruction_overrides = dict(instruction_overrides or {})
        self.with_target = with_target

    def encode_example(self, example: dict) -> tuple[list[int], list[int]]:
        """``(prompt_ids, target_ids)`` of one example; target ends with EOS."""
        prompt, target = render_example(
            example["task"], example.get("input_text"), example.get("output", ""), example.get("metadata", ""),
            self.instruction_overrides.get(example["task"]),
        )
        prompt_ids = ([self.bos_id] if self.bos_id is not None else []) + _ids(self.tokenizer, prompt)
        target_ids = _ids(self.tokenizer, target) + [self.eos_id] if self.with_target else []
        if self.max_length is not None:
            room = self.max_length - len(target_ids)
            if room < 1:
                raise ValueError(f"target of {len(target_ids)} tokens does not fit max_length={self.max_length}")
            prompt_ids = prompt_ids[-room:]
        return prompt_ids, target_ids

    def __call__(self, examples: list[dict]) -> dict:
        encoded = [self.encode_example(e) for e in examples]
        width = max(len(p) + len(t) for p, t in encoded)
        batch = len(examples)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, width), dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        for row, (prompt_ids, target_ids) in enumerate(encoded):
            sequence = prompt_ids + target_ids
            input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, : len(sequence)] = 1
            if target_ids:
                labels[row, len(prompt_ids) : len(sequence)] = torch.tensor(target_ids, dtype=torch.long)
        images = [e["image"] for e in examples if e.get("image") is not None]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "has_image": torch.tensor([e.get("image") is not None for e in examples], dtype=torch.bool),
            "images": torch.stack(images) if images else None,
            "prompt_lengths": torch.tensor([len(p) for p, _ in encoded], dtype=torch.long),
        }
