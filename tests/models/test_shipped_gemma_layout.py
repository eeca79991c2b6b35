"""Without the gemma extra (as in CI): the shipped Gemma codec's tensors are exactly the trained parts
of a Gemma-3-270M codec built on the meta device from its config, with the same shapes."""

import dataclasses
import json

import torch

from simulator.assets import CHECKPOINTS_DIR
from simulator.models.checkpoint import _is_saved, _pretrained_prefixes, check_weights
from simulator.models.config import CodecConfig
from simulator.models.mllm import M4SCModel

FOLDER = CHECKPOINTS_DIR / "m4sc_gemma3_270m"


def test_the_shipped_gemma_codec_matches_a_meta_device_gemma3_270m_codec():
    from safetensors import safe_open

    config = CodecConfig.from_dict(json.loads((FOLDER / "config.json").read_text())["codec"])
    assert config.llm_path == "package:gemma3-270m" and config.llm["model_type"] == "gemma3_text"
    assert (config.llm["hidden_size"], config.llm["num_hidden_layers"], config.llm["vocab_size"]) == (640, 18, 262144)
    # The same architecture from its config alone: no weights, no extra, no memory.
    with torch.device("meta"):
        model = M4SCModel(dataclasses.replace(config, llm_path=None))
    expected = model.state_dict()
    with safe_open(str(FOLDER / "model.safetensors"), framework="pt") as handle:
        shipped = {key: torch.empty(handle.get_slice(key).get_shape(), device="meta") for key in handle.keys()}
    skipped = _pretrained_prefixes(config)
    check_weights(shipped, expected, FOLDER / "model.safetensors", required=lambda key: _is_saved(key, skipped))
    assert any("lora_A" in key for key in shipped) and not any(key.endswith("base_layer.weight") for key in shipped)
