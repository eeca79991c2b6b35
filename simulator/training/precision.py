"""Mixed precision of a training stage: which autocast dtype a recipe's ``precision`` gets on this
device, and frozen weights kept in bf16 for the stage's duration.

``precision: bf16`` runs under ``torch.autocast`` with bfloat16 on CUDA, and on a CPU whose matrix
units multiply bf16 (AVX-512 BF16 or AMX): there a 2048 x 640 by 640 x 2048 matmul runs 2.6x (AVX-512
BF16, 2 threads) to 7x (AMX) faster than in fp32. A CPU without them runs fp32 and says so in one
logged line. ``fp16`` is CUDA-only (it needs loss scaling); on the CPU it also falls back to fp32.

Under CPU autocast a frozen fp32 weight is cast to bf16 again at every use (autocast caches casts of
trainable leaves only): for Gemma-3-270M that copy was a third of a LoRA step. :class:`FrozenInBF16`
stores those weights in bf16 once, which gives the matmuls the very operands autocast would give
them, so the numbers are those of plain autocast; their fp32 values are put back when the stage
ends and whenever a checkpoint is written.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["cpu_supports_bf16", "autocast_dtype", "describe", "FrozenInBF16"]

logger = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX-BF16); without it oneDNN
    emulates bf16 matmuls, slower than fp32."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    if capabilities:
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(precision: str, device: torch.device, cpu_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``precision`` ("fp32", "bf16", "fp16") on ``device``; None
    runs fp32. ``cpu_bf16``: whether the CPU does bf16 (None: :func:`cpu_supports_bf16`). Logs one
    line when a CPU falls back to fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "bf16":
        if cpu_bf16 if cpu_bf16 is not None else cpu_supports_bf16():
            return torch.bfloat16
        logger.warning("precision bf16: this CPU has no bf16 matrix instructions (AVX-512 BF16 or AMX), so the "
                       "stage runs in fp32")
        return None
    logger.warning("precision %s: CPU autocast supports bf16 only, so the stage runs in fp32", precision)
    return None


def describe(precision: str, device: torch.device) -> str:
    """What ``precision`` runs as on ``device`` of this machine, for a model card (written where the run
    trained): e.g. "bf16 autocast (cpu), frozen weights stored in bf16", "fp32"."""
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        return f"{precision} autocast (cuda)" + (", frozen weights stored in bf16" if precision == "bf16" else "")
    if precision != "bf16":
        return f"fp32 ({precision} asked for; CPU autocast supports bf16 only)"
    if cpu_supports_bf16():
        return "bf16 autocast (cpu), frozen weights stored in bf16"
    return "fp32 (bf16 asked for; this CPU has no bf16 matrix instructions)"


class FrozenInBF16:
    """The frozen 2-D weights of ``model``'s linear layers stored in bf16 while a stage runs under bf16
    autocast, on the CPU or CUDA (a no-op for ``dtype`` None); the LM head, when frozen, gets a bf16 copy that
    :meth:`~simulator.models.mllm.M4SCModel.logits` uses. Embedding tables stay fp32 (a bf16
    embedding would turn the whole residual stream bf16).

    Use as a context manager around the stage; :meth:`fp32` puts the fp32 weights back for a block
    (checkpoint writing).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None):
        self.model = model
        self.dtype = dtype
        self._saved: list[tuple[nn.Parameter, torch.Tensor]] = []

    def _frozen_linear_weights(self) -> list[nn.Parameter]:
        head = self.model.lm_head.weight if hasattr(self.model, "lm_head") else None
        seen, weights = set(), []
        for module in self.model.modules():
            weight = getattr(module, "weight", None)
            if (isinstance(module, nn.Linear) and isinstance(weight, nn.Parameter) and not weight.requires_grad
                    and weight.dtype == torch.float32 and weight is not head and id(weight) not in seen):
                seen.add(id(weight))
                weights.append(weight)
        return weights

    def _store(self) -> None:
        for weight in self._frozen_linear_weights():
            self._saved.append((weight, weight.data))
            weight.data = weight.data.to(self.dtype)
        head = getattr(self.model, "lm_head", None)
        if head is not None and not head.weight.requires_grad and hasattr(self.model, "head_cast"):
            self.model.head_cast = head.weight.detach().to(self.dtype)

    def _restore(self) -> None:
        for weight, data in self._saved:
            weight.data = data
        self._saved.clear()
        if hasattr(self.model, "head_cast"):
            self.model.head_cast = None

    def __enter__(self) -> "FrozenInBF16":
        if self.dtype is not None:
            self._store()
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    @contextmanager
    def fp32(self):
        """The fp32 weights for the block, bf16 again after it."""
        stored = bool(self._saved)
        self._restore()
        try:
            yield
        finally:
            if stored:
                self._store()
