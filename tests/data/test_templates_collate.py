"""Unified instruction template and the collator's Output-only label mask."""

from __future__ import annotations

import pytest
import torch

from simulator.data.collate import IGNORE_INDEX, InstructionCollator
from simulator.data.templates import IMAGE_PLACEHOLDER, TEMPLATES, example_from_item, render_example, render_prompt


class CharTokenizer:
    """One id per character (ord + 3); ids 0/1/2 are pad/eos/bos."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) + 3 for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(i - 3) for i in ids if i >= 3)


def test_paper_instruction_texts_are_defaults():
    assert TEMPLATES["caption"].instruction.startswith("Please carefully observe the provided image and identify the main elements")
    assert TEMPLATES["caption"].input_text == "Image caption."
    assert "'Cannot obtain an answer from the image.'" in TEMPLATES["vqa"].instruction
    assert not TEMPLATES["classify"].uses_image


def test_render_prompt_sections():
    prompt = render_prompt("vqa", "How many cubes are there?", metadata="CLEVR family count")
    assert prompt.split("\n")[0] == "### Instruction:"
    assert f"### Input:\n{IMAGE_PLACEHOLDER}\nHow many cubes are there?\n### Metadata:\nCLEVR family count\n### Output:\n" in prompt
    caption_prompt, target = render_example("caption", None, "there are two cubes.")
    assert caption_prompt.endswith(f"### Input:\n{IMAGE_PLACEHOLDER}\nImage caption.\n### Output:\n") and target == "there are two cubes."
    classify_prompt = render_prompt("classify", "a fine film", instruction="Sentiment?")
    assert classify_prompt == "### Instruction:\nSentiment?\n### Input:\na fine film\n### Output:\n"
    with pytest.raises(ValueError):
        render_prompt("translate", "x")


def test_collator_masks_everything_but_output():
    tok = CharTokenizer()
    collate = InstructionCollator(tok, pad_id=0, eos_id=1, bos_id=2, instruction_overrides={"vqa": "Answer.", "classify": "Label."})
    image = torch.rand(3, 8, 8)
    batch = collate([
        {"task": "vqa", "input_text": "How many?", "output": "3", "image": image},
        {"task": "classify", "input_text": "a dull and long film", "output": "negative"},
    ])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["has_image"].tolist() == [True, False] and batch["images"].shape == (1, 3, 8, 8)
    for row, target in enumerate(["3", "negative"]):
        labels = batch["labels"][row]
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert kept == tok.encode(target) + [1]
        start = int(batch["prompt_lengths"][row])
        assert (labels[:start] == IGNORE_INDEX).all()
        assert tok.decode(batch["input_ids"][row, :start].tolist()).endswith("### Output:\n")
        length = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, 0] == 2 and (batch["input_ids"][row, length:] == 0).all()
        assert (labels[length:] == IGNORE_INDEX).all()


def test_collator_truncates_prompt_keeps_target():
    collate = InstructionCollator(CharTokenizer(), pad_id=0, eos_id=1, max_length=20)
    batch = collate([{"task": "classify", "input_text": "x" * 100, "output": "positive"}])
    assert batch["input_ids"].shape[1] == 20
    assert (batch["labels"][0] != IGNORE_INDEX).sum() == len("positive") + 1


def test_collator_accepts_tokenizers_encoding_objects():
    class Encoding:
        def __init__(self, ids):
            self.ids = ids

    class Wrapped(CharTokenizer):
        def encode(self, text):
            return Encoding(super().encode(text))

    batch = InstructionCollator(Wrapped(), pad_id=0, eos_id=1)([{"task": "classify", "input_text": "ok", "output": "positive"}])
    assert batch["labels"][0, -1] == 1


def test_example_from_items():
    assert example_from_item({"task": "classify", "text": "t", "label": "positive"})["output"] == "positive"
    vqa = example_from_item({"task": "vqa", "question": "q?", "answer": "yes", "image": None})
    assert vqa["input_text"] == "q?" and vqa["output"] == "yes"
    caption = example_from_item({"task": "caption", "caption": "c.", "captions": ["c."], "image": None})
    assert caption["input_text"] is None and caption["output"] == "c."
