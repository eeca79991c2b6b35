"""The object head of the tiny recipe's vision encoder (stage 0's per-patch scene-graph head) and
what reads it: which patches hold an object centre, the detected objects' features and attribute
values, and the question words that name an attribute value. The codec's object tokens
(:mod:`simulator.models.mllm`) and DeepSC-VQA's image user (:mod:`simulator.baselines.image_user`)
both use them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OBJECT_CLASSES", "OBJECT_ATTRIBUTES", "detect_objects", "object_attribute_probabilities",
           "object_features", "object_values", "attribute_argmax", "word_attribute_table"]

# Classes of the per-patch scene-graph head (stage 0's labels, ``TaskData.patch_targets``):
# "no object centre here" + each value of colour, shape, size and material (simulator.data.attributes).
OBJECT_CLASSES = (1 + 8, 1 + 3, 1 + 2, 1 + 2)
OBJECT_ATTRIBUTES = ("color", "shape", "size", "material")  # OBJECT_CLASSES' order (keys of ATTRIBUTE_VALUES)


def detect_objects(object_head: nn.Module, features: torch.Tensor, max_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Object centres from vision features ``[batch, P, D]``: the patches whose scene-graph head
    (``[..., D] -> [..., sum(OBJECT_CLASSES)]``) says "an object centre" (mean over the four
    attributes of ``1 - p(no object)`` above 0.5), the ``max_objects`` most certain of them, in patch
    order (row-major: far to near, then left to right). Returns ``patches [batch, K]`` int64 and
    ``found [batch, K]`` bool; the patch of a slot that found nothing is arbitrary."""
    logits = object_head(features).split(OBJECT_CLASSES, dim=-1)
    score = 1.0 - torch.stack([part.softmax(-1)[..., 0] for part in logits]).mean(0)  # [batch, P]
    best, patches = score.topk(min(max_objects, score.shape[1]), dim=1)
    found = best > 0.5
    order = torch.where(found, patches, patches + score.shape[1]).argsort(dim=1)
    return patches.gather(1, order), found.gather(1, order)


def object_attribute_probabilities(object_head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """What the scene-graph head says of features ``[..., D]``: each attribute's softmax ("no object"
    first), concatenated: ``[..., sum(OBJECT_CLASSES)]``."""
    parts = object_head(features).split(OBJECT_CLASSES, dim=-1)
    return torch.cat([part.softmax(-1) for part in parts], dim=-1)


def object_features(object_head: nn.Module, features: torch.Tensor,
                    max_objects: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vision features ``[batch, P, D]`` -> the detected objects' features ``[batch, K, D]``, their
    patches ``[batch, K]`` and which slots found one ``[batch, K]`` (:func:`detect_objects`)."""
    patches, found = detect_objects(object_head, features, max_objects)
    picked = features.gather(1, patches.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    return picked, patches, found


def object_values(object_head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The most probable colour, shape, size and material the scene-graph head reads in features
    ``[..., D]`` (ignoring "no object"): ``[..., 4]`` int64 indices into the lists of
    :data:`simulator.data.attributes.ATTRIBUTE_VALUES`, in :data:`OBJECT_ATTRIBUTES`' order."""
    return attribute_argmax(object_head(features))


def attribute_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` int64: in each attribute's group of the object head's logits or probabilities
    ``[..., sum(OBJECT_CLASSES)]``, the best value, class 0 ("no object centre here") left out."""
    return torch.stack([part[..., 1:].argmax(-1) for part in scores.split(OBJECT_CLASSES, dim=-1)], -1)


def word_attribute_table(tokenizer, vocab_size: int) -> torch.Tensor:
    """``[vocab_size, 2]`` int64: for each word id the attribute it names (its index in
    :data:`simulator.models.objects.OBJECT_ATTRIBUTES`: colour, shape, size, material) and the value's
    index in :data:`simulator.data.attributes.ATTRIBUTE_VALUES`; ``(-1, -1)`` for other words. Plural
    shapes name their shape; words the tokenizer does not know as one word are left out."""
    from simulator.data.attributes import ATTRIBUTE_VALUES, PLURAL_SHAPES

    table = torch.full((vocab_size, 2), -1, dtype=torch.long)
    for attribute, name in enumerate(OBJECT_ATTRIBUTES):
        for index, value in enumerate(ATTRIBUTE_VALUES[name]):
            for word in (value, PLURAL_SHAPES[value]) if name == "shape" else (value,):
                word_ids = tokenizer.encode(word, add_special_tokens=False)
                if len(word_ids) == 1 and word_ids[0] != tokenizer.unk_token_id:
                    table[word_ids[0]] = torch.tensor([attribute, index])
    return table
