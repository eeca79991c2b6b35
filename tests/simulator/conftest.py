"""Fixtures for the simulator tests: a tiny generated CLEVR-like test split, a tiny random codec
with an identity channel codec saved as a checkpoint, and scenario files built from a base dict."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

SHORT_INSTRUCTIONS = {
    "vqa": "Answer the question about the image.",
    "caption": "Describe the image.",
    "classify": "Is the text positive or negative?",
}


@pytest.fixture(scope="session")
def clevr_dir(tmp_path_factory) -> Path:
    """Eight generated images (all in the test split), four questions and two captions each."""
    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    root = tmp_path_factory.mktemp("clevr")
    generate_clevr(root, GeneratorConfig(num_images=8, seed=12345, split_fractions=(0.0, 0.0, 1.0),
                                         questions_per_image=4, captions_per_image=2))
    return root


def _texts(clevr_dir: Path) -> list[str]:
    questions = json.loads((clevr_dir / "questions" / "CLEVR_test_questions.json").read_text())["questions"]
    captions = json.loads((clevr_dir / "captions" / "CLEVR_test_captions.json").read_text())["captions"]
    texts = [q["question"] for q in questions] + [str(q["answer"]) for q in questions]
    texts += [c for entry in captions for c in entry["captions"]]
    texts += list(SHORT_INSTRUCTIONS.values()) + ["### Instruction: Input: Output: <image> Image caption."]
    return texts


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, clevr_dir) -> Path:
    """A random tiny codec (64x64 images, 1+1 layers, 4 new tokens) with an identity channel codec
    (d = 128 = 2c, so the channel codec is lossless), saved with ``save_codec``."""
    import torch

    from simulator.models.checkpoint import save_codec
    from simulator.models.config import profile_config
    from simulator.models.mllm import M4SCModel
    from simulator.models.tokenizer import train_word_tokenizer

    tokenizer = train_word_tokenizer(_texts(clevr_dir), vocab_size=512)
    base = profile_config("tiny")
    llm = {**base.llm, "vocab_size": len(tokenizer), "num_hidden_layers": 1, "pad_token_id": tokenizer.pad_token_id,
           "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    vision = {**base.vision, "num_hidden_layers": 1, "image_size": 64}
    config = profile_config("tiny", llm=llm, vision=vision, max_new_tokens=4, instructions=dict(SHORT_INSTRUCTIONS))
    torch.manual_seed(0)
    model = M4SCModel(config, tokenizer).eval()
    model.channel_encoder.init_identity()
    model.channel_decoder.init_identity()
    return save_codec(model, tmp_path_factory.mktemp("codec"))


def merge(base: dict, changes: dict) -> dict:
    """Deep merge of nested dicts (``changes`` wins); a value None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture
def base_scenario(tiny_checkpoint, clevr_dir) -> dict:
    """A small valid scenario: 3 users, 2 SNRs, 2 snapshot rounds, sharing off + thresholds 1.0 and 0.9."""
    return {
        "name": "tiny",
        "seed": 7,
        "num_users": 3,
        "snr_db": [0.0, 30.0],
        "model": {"checkpoint": str(tiny_checkpoint)},
        "data": {"clevr_dir": str(clevr_dir)},
        "traffic": {"mode": "snapshot", "tasks": {"vqa": 1.0}, "rounds": 2, "shared_task_probability": 0.5},
        "channel": {"name": "awgn"},
        "sharing": {"include_off": True, "thresholds": [1.0, 0.9]},
    }


@pytest.fixture
def write_scenario(tmp_path, base_scenario):
    """``write_scenario(changes=None, name="scenario.yaml") -> path`` of the merged scenario YAML."""

    def write(changes: dict | None = None, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merge(base_scenario, changes or {}), sort_keys=False))
        return path

    return write
