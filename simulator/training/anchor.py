"""Stage ``anchor``: object tokens pulled towards the LLM's own embeddings of the words that name the
object, before the paper's alignment stage.

With ``visual_tokens: objects`` each detected object reaches the LLM as ``tokens_per_object`` vectors
from the projector. A pretrained LLM has never seen such vectors; it has seen words. This stage
trains the projector alone so that, for an object whose scene labels are (size, colour, material,
shape), its token ``j`` lies near the LLM's input embedding of attribute ``j``'s word in the spoken
order ("large", "red", "metal", "cube"); with one token per object, near the mean of the four. The
loss needs only the projector and the embedding table, not a pass through the LLM: for
Gemma-3-270M a step costs milliseconds instead of seconds. The alignment and instruction stages
then start from tokens that read like words. It is a deviation from the paper (whose stage 1 is the
captioning loss alone), listed in the model card.

The labels are the generator's scene files (the per-patch labels of stage 0's scene-graph loss):
a detected slot whose patch holds no object centre in the scene has no target and no loss.
"""

from __future__ import annotations

import torch

from simulator.data.attributes import ATTRIBUTE_VALUES, ATTRIBUTES
from simulator.models.objects import OBJECT_ATTRIBUTES
from simulator.training.config import ANCHOR_TOKENS

__all__ = ["attribute_word_embeddings", "anchor_targets", "anchor_loss"]


def attribute_word_embeddings(model) -> list[torch.Tensor]:
    """The LLM's input embeddings of every attribute value's word, as the word appears inside a
    sentence (after a space): one ``[num_values, d]`` tensor per attribute in
    :data:`~simulator.models.objects.OBJECT_ATTRIBUTES`' order (colour, shape, size, material). A word
    the tokenizer splits gets the mean of its pieces' embeddings."""
    tokenizer = model.tokenizer
    embed = model.base_llm.get_input_embeddings()
    device = embed.weight.device
    tables = []
    with torch.no_grad():
        for name in OBJECT_ATTRIBUTES:
            rows = []
            for word in ATTRIBUTE_VALUES[name]:
                ids = tokenizer.encode(" " + word, add_special_tokens=False) or tokenizer.encode(word, add_special_tokens=False)
                rows.append(embed(torch.tensor(ids, device=device)).float().mean(0))
            tables.append(torch.stack(rows))
    return tables


def anchor_targets(labels: torch.Tensor, tables: list[torch.Tensor], tokens_per_object: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the object tokens from scene labels.

    Args:
        labels: ``[B, K, 4]`` int64, each slot's (colour, shape, size, material) value index + 1, 0 where
            the slot's patch holds no object centre (``TaskData.patch_targets`` at the detected patches).
        tables: :func:`attribute_word_embeddings`.
        tokens_per_object: 1 or 4 (:data:`ANCHOR_TOKENS`).

    Returns:
        ``targets [B, K, tokens_per_object, d]`` float32 and ``valid [B, K]`` bool.
    """
    if tokens_per_object not in ANCHOR_TOKENS:
        raise ValueError(f"stage anchor has targets for {' or '.join(map(str, ANCHOR_TOKENS))} tokens per object, "
                         f"not {tokens_per_object}")
    valid = (labels > 0).all(-1)
    values = (labels - 1).clamp(min=0)
    words = {name: table[values[..., i]] for i, (name, table) in enumerate(zip(OBJECT_ATTRIBUTES, tables))}
    spoken = torch.stack([words[name] for name in ATTRIBUTES], dim=2)  # [B, K, 4, d]: size, colour, material, shape
    targets = spoken.mean(2, keepdim=True) if tokens_per_object == 1 else spoken
    return targets, valid


def anchor_loss(model, pixel_values: torch.Tensor, patch_labels: torch.Tensor, tables: list[torch.Tensor]) -> torch.Tensor:
    """Relative squared distance of the projector's object tokens to their word targets, averaged over
    the slots that hold a labelled object: ``|token - target|^2 / |target|^2``. Scalar float32.

    Args:
        pixel_values: ``[B, 3, H, W]`` in [-1, 1].
        patch_labels: ``[B, P, 4]`` int64 per-patch scene labels (``TaskData.patch_targets``).
        tables: :func:`attribute_word_embeddings`.
    """
    with torch.no_grad():
        picked, patches, found = model.object_features(model.vision_features(pixel_values))
    labels = patch_labels.gather(1, patches.unsqueeze(-1).expand(-1, -1, patch_labels.shape[-1]))
    k = model.config.tokens_per_object
    targets, valid = anchor_targets(labels, tables, k)
    valid = valid & found
    tokens = model.object_words(picked).unflatten(-1, (k, -1)).float()  # [B, K, k, d]
    if not bool(valid.any()):  # no labelled object found in this batch: a zero that still has a gradient
        return tokens.sum() * 0.0
    error = (tokens - targets).pow(2).sum(-1) / targets.pow(2).sum(-1).clamp(min=1e-12)
    return error[valid].mean()
