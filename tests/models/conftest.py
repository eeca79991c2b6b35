"""Tiny random codecs for model tests: no download, built in about a second."""

import pytest
import torch

from simulator.models.config import profile_config
from simulator.models.mllm import M4SCModel
from simulator.models.tokenizer import train_word_tokenizer

CORPUS = [
    "is there a red cube ?", "yes", "no", "how many spheres are there ?", "0 1 2 3 4 5",
    "a large red metal cube is left of a small blue rubber sphere .", "what color is the cylinder ?",
    "classify the sentiment of the review : positive negative", "describe the image .",
]


def tiny_config(**overrides):
    base = profile_config("tiny")
    llm = {**base.llm, "vocab_size": 64, "num_hidden_layers": 2}
    vision = {**base.vision, "num_hidden_layers": 1, "image_size": 32}
    return profile_config("tiny", llm=llm, vision=vision, **overrides)


@pytest.fixture(scope="module")
def tokenizer():
    return train_word_tokenizer(CORPUS, vocab_size=64)


@pytest.fixture
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return M4SCModel(tiny_config(), tokenizer).eval()
