"""A compressed codec for low-power nodes: int8 weights through torchao (issue 19).

``quantize_codec(model, mode)`` quantises an inference codec (the BS's MLLM and the user's receiver
alike) with torchao, PyTorch's maintained quantisation path (``torch.ao.quantization`` is
deprecated in favour of it). Every ``nn.Linear`` (vision encoder, LLM with its merged LoRA, LM head,
channel encoder and decoder, and the KAN projector once :meth:`~simulator.models.kan.KANLayer.fold`
has made each of its layers one linear map) gets int8 weights with one scale per output channel:

- ``int8``: weight-only (``Int8WeightOnlyConfig``): activations stay float and each matmul reads
  the int8 weight. Memory is what a low-power node lacks, and on a CPU this runs at about fp32 speed;
- ``int8_dynamic``: int8 activations too, quantised per token at run time
  (``Int8DynamicActivationInt8WeightConfig``), so the matmuls run in int8. That pays off where an
  int8 GEMM kernel exists (a GPU's, or oneDNN's through ``torch.compile``); PyTorch's eager CPU
  int8 matmul (``torch._int_mm``) is a reference kernel, ~30x slower than the fp32 one here.

Both also store the token and position embedding tables as int8 rows with one scale each,
dequantised at lookup (``IntxWeightOnlyConfig``). Norms, biases, the vision patch convolution and
the pooling head's attention projection stay float32 (5% of the tiny codec's fp32 bytes). LoRA must
be merged first (``load_codec(..., inference=True)``), so the int8 weight is the one that runs.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["QUANTIZATION_MODES", "quantize_codec", "weight_bytes"]

QUANTIZATION_MODES = ("none", "int8", "int8_dynamic")


def quantize_codec(model: nn.Module, mode: str = "int8") -> nn.Module:
    """Quantise ``model`` in place (``mode`` ``"none"``: unchanged); returns it. ValueError for an
    unknown mode or a codec whose LoRA adapters are not merged."""
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization {mode!r}; choose one of {', '.join(QUANTIZATION_MODES)}")
    if mode == "none":
        return model
    if getattr(model.config, "lora", None) is not None and not model.lora_merged:
        raise ValueError("quantize a codec loaded for inference (LoRA merged), not a trainable one")
    from torchao.quantization import (Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig,
                                      quantize_)
    from torchao.quantization.granularity import PerAxis

    from simulator.models.kan import KANLayer

    for module in model.modules():
        if isinstance(module, KANLayer):
            module.fold()
    # A tied LM head shares its weight with the input embedding: untie it, as the lookup and the
    # matmul quantise differently (weight-only per row vs int8 activations and weights).
    head = model.lm_head
    if head.weight is model.base_llm.get_input_embeddings().weight:
        head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    linear_config = Int8WeightOnlyConfig() if mode == "int8" else Int8DynamicActivationInt8WeightConfig()
    quantize_(model, linear_config, filter_fn=lambda module, _name: isinstance(module, nn.Linear))
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
              filter_fn=lambda module, _name: isinstance(module, nn.Embedding))
    return model


def _tensor_bytes(tensor: torch.Tensor) -> int:
    """Storage of ``tensor``; a tensor subclass (torchao's int8 tensor) counts its inner tensors."""
    if hasattr(tensor, "__tensor_flatten__") and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of ``model`` (shared tensors once)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += _tensor_bytes(tensor)
    return total
