"""The int8 codec (issue 19): every matmul weight in int8, the rest float, outputs close to fp32."""

import copy

import pytest
import torch
from torch import nn

from simulator.models.quantize import quantize_codec, weight_bytes

PROMPTS = ["is there a red cube ?", "how many spheres are there ?", "describe the image ."]


def _images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture
def merged(tiny_model):
    return tiny_model.merge_lora()


def _plain(tensor) -> bool:
    return type(tensor) in (torch.Tensor, nn.Parameter)


@pytest.mark.parametrize("mode", ["int8", "int8_dynamic"])
def test_every_matmul_weight_and_embedding_is_int8(merged, mode):
    from simulator.models.kan import KANLayer

    fp32_bytes = weight_bytes(merged)
    quantize_codec(merged, mode)
    linears = [m for m in merged.modules() if isinstance(m, nn.Linear)]
    embeddings = [m for m in merged.modules() if isinstance(m, nn.Embedding)]
    assert linears and embeddings
    assert not any(_plain(m.weight) for m in linears + embeddings)
    kan = [m for m in merged.modules() if isinstance(m, KANLayer)]
    assert kan and all(m.folded is not None and m.coef is None for m in kan)
    assert merged.lm_head.weight is not merged.base_llm.get_input_embeddings().weight
    left = sum(p.numel() * p.element_size() for p in merged.parameters() if _plain(p))
    assert left < 0.1 * fp32_bytes  # norms, biases, the patch convolution
    assert weight_bytes(merged) <= 0.35 * fp32_bytes


def test_a_folded_kan_layer_is_the_same_function():
    from simulator.models.kan import KANLayer

    torch.manual_seed(0)
    layer = KANLayer(6, 4)
    torch.nn.init.normal_(layer.coef)
    x = torch.rand(5, 6) * 2.4 - 1.2
    with torch.no_grad():
        expected = layer(x)
        assert torch.allclose(layer.fold()(x), expected, atol=1e-5)
    assert layer.coef is None and layer.folded.weight.shape == (4, 6 * (1 + layer.grid_size + layer.order))


def test_int8_codec_decodes_close_to_fp32(merged):
    reference = copy.deepcopy(merged)
    quantize_codec(merged, "int8")
    ids, mask = merged.tokenize(PROMPTS)
    with torch.inference_mode():
        fp32 = reference.generate(ids, mask, _images(), max_new_tokens=4)
        hidden = fp32.hidden[fp32.token_mask]
        exact, approx = reference.logits(hidden), merged.logits(hidden)
    cosine = torch.nn.functional.cosine_similarity(exact, approx, dim=-1)
    assert float(cosine.min()) > 0.99
    assert not torch.equal(exact, approx)  # the int8 kernels ran


def test_quantize_refuses_an_unknown_mode_and_an_unmerged_codec(tiny_model):
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        quantize_codec(tiny_model, "int4")
    assert quantize_codec(tiny_model, "none") is tiny_model
    if tiny_model.config.lora is not None:
        with pytest.raises(ValueError, match="LoRA merged"):
            quantize_codec(tiny_model, "int8")
