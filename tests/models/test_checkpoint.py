"""Checkpoints: exact round trip, and clear errors for corrupt or mismatched folders."""

import json

import pytest
import torch

from simulator.models.checkpoint import CheckpointError, load_codec, save_codec
from simulator.models.mllm import M4SCModel
from tests.models.conftest import tiny_config


def test_round_trip_is_exact(tiny_model, tmp_path):
    with torch.no_grad():
        for name, param in tiny_model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # make the adapters non-trivial
    save_codec(tiny_model, tmp_path)
    loaded = load_codec(tmp_path)
    original = tiny_model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    prompt = ["is there a red cube ?"]
    ids, mask = tiny_model.tokenize(prompt)
    assert torch.equal(tiny_model.generate(ids, mask, max_new_tokens=4).tokens,
                       loaded.generate(*loaded.tokenize(prompt), max_new_tokens=4).tokens)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_codec(tmp_path / "nope")


def test_corrupt_weights(tiny_model, tmp_path):
    save_codec(tiny_model, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        load_codec(tmp_path)


def test_config_that_does_not_match_the_weights(tiny_model, tmp_path, tokenizer):
    save_codec(tiny_model, tmp_path)
    other = M4SCModel(tiny_config(channel_symbols_per_token=16), tokenizer)
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["codec"] = other.config.to_dict()
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="do not match config.json"):
        load_codec(tmp_path)


def test_unknown_config_key(tiny_model, tmp_path):
    save_codec(tiny_model, tmp_path)
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["codec"]["surprise"] = 1
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="surprise"):
        load_codec(tmp_path)
