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


def test_inference_copy_sends_the_reference_tokens(tmp_path, monkeypatch):
    """Pins the inference optimisations on the shipped codec: ``load_codec(inference=True)`` (LoRA
    merged into the base weights, KAN basis from its k+1 non-zero functions) gives the same
    answers and captions as the reference computation (adapters apart, Cox-de Boor over every
    knot), semantic vectors equal to float rounding; and it is never saved."""
    import simulator.models.kan as kan
    from simulator.data.templates import render_prompt
    from simulator.evaluation import default_checkpoint

    fast = load_codec(default_checkpoint(), inference=True)
    reference = load_codec(default_checkpoint())
    assert fast.lora_merged and not reference.lora_merged
    name = "llm.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    assert not torch.equal(reference.state_dict()[name], fast.state_dict()[name])
    questions = ["What color is the large metal cube?", "How many spheres are there?",
                 "Is there a small rubber cylinder left of the red sphere?", "What shape is the small thing?"]
    prompts = [render_prompt("vqa", q, "", reference.config.instructions.get("vqa")) for q in questions]
    prompts += [render_prompt("caption", None, "", reference.config.instructions.get("caption"))] * 2
    size = int(reference.vision.config.image_size)
    images = torch.rand(len(prompts), 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got = fast.generate(*fast.tokenize(prompts), images)

    def cox_de_boor(x, first_knot, step, num_intervals, order):
        knots = first_knot + step * torch.arange(num_intervals + 1, dtype=x.dtype)
        return kan.bspline_basis(x, knots, order)

    monkeypatch.setattr(kan, "uniform_bspline_basis", cox_de_boor)
    expected = reference.generate(*reference.tokenize(prompts), images)
    assert torch.equal(got.tokens, expected.tokens)
    assert torch.equal(got.token_mask, expected.token_mask)
    assert torch.allclose(got.hidden, expected.hidden, atol=1e-4), (got.hidden - expected.hidden).abs().max()
    with pytest.raises(CheckpointError, match="merged"):
        save_codec(fast, tmp_path / "merged")
    assert not (tmp_path / "merged" / "model.safetensors").exists()


def test_a_baseline_folder_is_named_as_such(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format_version": 1, "model": "deepsc", "config": {}}))
    with pytest.raises(CheckpointError, match=r"holds a deepsc baseline, not an M4SC codec.*systems: \[m4sc, deepsc\]"):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_codec(tmp_path)
