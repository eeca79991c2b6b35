"""What each training stage updates and which loss it minimises.

Parameter groups (names used in ``TrainConfig.stages.<stage>.trainable``):
``vision``, ``siglip_text`` (stage-0 text tower), ``projector``, ``llm_base`` (LLM weights except
LoRA), ``lora``, ``channel_codec`` (channel encoder + decoder), ``rate_codes`` (the per-rate
decoders and short codes of stage ``rates``). Everything not selected is frozen.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from channels.conventions import snr_db_to_no
from simulator.data.collate import IGNORE_INDEX
from simulator.links import semantic_channel
from simulator.models.objects import OBJECT_CLASSES, object_values
from simulator.training.data import to_pixel_values

__all__ = ["PARAMETER_GROUPS", "SiglipTextTower", "set_trainable", "siglip_loss", "lm_loss",
           "instruction_loss", "grounding_columns", "grounding_loss", "object_count_targets",
           "object_count_head", "count_layer", "object_count_loss", "target_hidden_states", "pixel_values_of", "joint_loss", "joint_channel_loss",
           "set_channel_rates", "rate_code_loss", "rate_channel_loss", "decoded_through_channel", "draw_channel",
           "right_align_padding"]

PARAMETER_GROUPS = ("vision", "siglip_text", "projector", "llm_base", "lora", "channel_codec", "rate_codes")


class SiglipTextTower(nn.Module):
    """Stage 0's parts that are not in the codec: SigLIP's text side (a ``SiglipTextModel`` plus
    the learnable logit scale and bias of the sigmoid loss, initialised to log 10 and -10 as in the
    SigLIP paper) and a linear per-patch scene-graph head ``[B, P, D] -> [B, P, sum(OBJECT_CLASSES)]``."""

    def __init__(self, vocab_size: int, embed_dim: int, max_length: int = 40, hidden_size: int = 96,
                 num_layers: int = 2, num_heads: int = 4, pad_id: int = 0):
        super().__init__()
        from transformers import SiglipTextConfig, SiglipTextModel

        config = SiglipTextConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                                  num_hidden_layers=num_layers, num_attention_heads=num_heads,
                                  max_position_embeddings=max_length, projection_size=embed_dim,
                                  pad_token_id=pad_id, bos_token_id=1, eos_token_id=2)
        self.max_length = max_length
        self.text = SiglipTextModel(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        self.object_head = nn.Linear(embed_dim, sum(OBJECT_CLASSES))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, max_length]`` right-padded ids -> ``[B, embed_dim]`` pooled text embeddings."""
        return self.text(input_ids=input_ids).pooler_output


def _group_of(name: str) -> str:
    if name.startswith("text_tower."):
        return "siglip_text"
    if name.startswith(("vision.", "object_head.")):
        return "vision"
    if name.startswith(("projector.", "object_position.", "object_attributes.")):
        return "projector"
    if name.startswith(("channel_decoder.rate_decoders.", "channel_encoder.short_codes.", "channel_decoder.short_codes.")):
        return "rate_codes"
    if name.startswith(("channel_encoder.", "channel_decoder.")):
        return "channel_codec"
    if name.startswith("llm."):
        return "lora" if "lora_" in name else "llm_base"
    raise ValueError(f"parameter {name!r} belongs to no group")


def set_trainable(model: nn.Module, groups: list[str], text_tower: nn.Module | None = None) -> list[nn.Parameter]:
    """Freeze everything except ``groups``; returns the trainable parameters."""
    unknown = sorted(set(groups) - set(PARAMETER_GROUPS))
    if unknown:
        raise ValueError(f"unknown parameter group {unknown[0]!r}; groups are {', '.join(PARAMETER_GROUPS)}")
    named = list(model.named_parameters())
    if text_tower is not None:
        named += [(f"text_tower.{n}", p) for n, p in text_tower.named_parameters()]
    trainable = []
    for name, param in named:
        param.requires_grad_(_group_of(name) in groups)
        if param.requires_grad:
            trainable.append(param)
    return trainable


def pixel_values_of(batch: dict, device) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Full-batch ``[B, 3, H, W]`` pixel values (zeros where a sample has no image) and ``has_image``."""
    has_image = batch["has_image"].to(device)
    if batch["images"] is None:
        return None, has_image
    images = to_pixel_values(batch["images"]).to(device)
    full = images.new_zeros(has_image.shape[0], *images.shape[1:])
    full[has_image] = images
    return full, has_image


def siglip_loss(model, text_tower: SiglipTextTower, images: torch.Tensor, caption_ids: torch.Tensor,
                patch_targets: torch.Tensor | None = None, object_weight: float = 0.0) -> torch.Tensor:
    """Sigmoid image-text loss: ``images [B, 3, H, W]`` uint8, ``caption_ids [B, L]`` (pair i matches i).

    With ``object_weight > 0``, plus that weight x the per-patch scene-graph cross-entropy against
    ``patch_targets [B, P, 4]`` (see ``TaskData.patch_targets``), summed over the four attributes.
    """
    device = caption_ids.device
    output = model.vision(pixel_values=to_pixel_values(images).to(device))
    image_embeds = F.normalize(output.pooler_output, dim=-1)
    text_embeds = F.normalize(text_tower(caption_ids), dim=-1)
    logits = image_embeds @ text_embeds.T * text_tower.logit_scale.exp() + text_tower.logit_bias
    labels = 2 * torch.eye(logits.shape[0], device=device) - 1
    loss = -F.logsigmoid(labels * logits).sum() / logits.shape[0]
    if object_weight > 0 and patch_targets is not None:
        # A codec with object tokens keeps the head (it picks the objects); otherwise it is stage 0's only.
        head = model.object_head if hasattr(model, "object_head") else text_tower.object_head
        object_logits = head(output.last_hidden_state).split(OBJECT_CLASSES, dim=-1)
        targets = patch_targets.to(device)
        loss = loss + object_weight * sum(F.cross_entropy(part.flatten(0, 1), targets[..., k].flatten())
                                          for k, part in enumerate(object_logits))
    return loss


def lm_loss(model, batch: dict) -> torch.Tensor:
    """Next-token loss on every real token of the text (no image), for LLM pre-training."""
    device = model.channel_encoder.linear.weight.device
    ids = batch["input_ids"].to(device)
    mask = batch["attention_mask"].to(device)
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    return model.llm(input_ids=ids, attention_mask=mask, labels=labels).loss


def instruction_loss(model, batch: dict, grounding_weight: float = 0.0,
                     grounding_layers: list[int] | None = None, count_head: nn.Module | None = None,
                     count_weight: float = 0.0, count_layer: int = 1,
                     word_attributes: torch.Tensor | None = None, at_targets: bool = False) -> torch.Tensor:
    """Loss on the Output tokens only (images spliced in where ``image_position`` says).

    With ``grounding_weight > 0`` and ``batch["grounding"]`` (``[B, P]``, see
    ``TaskData.grounding_targets``), plus that weight x :func:`grounding_loss` on head 0 of each of
    ``grounding_layers`` (default: every layer but the first, whose queries cannot know the question yet).
    With ``count_weight > 0``, plus that weight x :func:`object_count_loss` read by ``count_head`` from
    the output of LLM layer ``count_layer``. ``at_targets``: the LM head runs only where a label is
    (the same loss at a fraction of the cost for a large vocabulary; not with grounding or counting,
    which read the whole pass's attentions or hidden states).
    """
    device = model.channel_encoder.linear.weight.device
    pixel_values, has_image = pixel_values_of(batch, device)
    grounding = batch.get("grounding")
    grounded = grounding_weight > 0 and grounding is not None and pixel_values is not None
    counted = count_weight > 0 and count_head is not None and pixel_values is not None
    if at_targets and not (grounded or counted):
        token_hidden, token_targets = target_hidden_states(model, batch, pixel_values, has_image)
        return F.cross_entropy(model.logits(token_hidden).float(), token_targets)
    # The count labels read the same vision features as the visual tokens: one encoder pass for both.
    features = model.vision_features(pixel_values) if counted else None
    output = model(batch["input_ids"].to(device), batch["attention_mask"].to(device), labels=batch["labels"].to(device),
                   pixel_values=pixel_values, has_image=has_image, prompt_lengths=batch["prompt_lengths"],
                   output_attentions=grounded, output_hidden_states=counted, vision_features=features)
    loss = output.loss
    if grounded:
        image_start, answer_from = grounding_columns(model, batch, grounding.shape[1])
        layers = grounding_layers if grounding_layers is not None else range(1, len(output.attentions))
        attentions = [output.attentions[k][:, 0] for k in layers]
        loss = loss + grounding_weight * grounding_loss(attentions, grounding.to(device), image_start, answer_from)
    if counted:
        targets = object_count_targets(model, word_attributes, batch, features.detach(), has_image)
        loss = loss + count_weight * object_count_loss(output.hidden_states[count_layer], count_head, *targets)
    return loss


def object_count_targets(model, word_attributes: torch.Tensor, batch: dict, features: torch.Tensor,
                         has_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The labels of :func:`object_count_loss`: every prompt word that names a colour, shape, size or
    material, in rows with an image, and how many of the objects the codec detects in that image have
    that value, as the frozen object head reads each object.

    Args:
        word_attributes: ``[vocab, 2]`` int64 (attribute, value) per word id, ``-1`` for other words
            (:func:`~simulator.models.objects.word_attribute_table`).
        batch: right-padded training rows (``input_ids``, ``attention_mask``, ``prompt_lengths``).
        features: ``[B, P, d_vision]``, the images' :meth:`~simulator.models.mllm.M4SCModel.vision_features`;
            has_image: ``[B]`` bool.

    Returns:
        ``rows [N]``, ``columns [N]`` (the word's column in :meth:`M4SCModel.build_inputs`' sequence)
        and ``counts [N]`` in ``0..max_objects``, all int64.
    """
    device = features.device
    ids = batch["input_ids"].to(device)
    prompt_lengths = batch["prompt_lengths"].to(device)
    with torch.no_grad():
        picked, _, found = model.object_features(features)
        values = object_values(model.object_head, picked)  # [B, K, 4]
    num_slots = found.shape[1]
    attribute, value = word_attributes.to(device)[ids].unbind(-1)  # [B, L] each
    columns = torch.arange(ids.shape[1], device=device)
    used = ((attribute >= 0) & (columns < prompt_lengths[:, None]) & (batch["attention_mask"].to(device) > 0)
            & has_image.to(device)[:, None])
    said = values.gather(-1, attribute.clamp(min=0).unsqueeze(1).expand(-1, num_slots, -1))  # [B, K, L]
    counts = ((said == value.unsqueeze(1)) & found.unsqueeze(-1)).sum(1)  # [B, L]
    # A text token's column in the spliced sequence: the visual tokens' count further on where they precede it.
    image_start = model.image_columns(ids, has_image.to(device), prompt_lengths)
    shifted = columns + num_slots * model.config.tokens_per_object * (columns >= image_start[:, None]).long()
    rows, words = used.nonzero(as_tuple=True)
    return rows, shifted[rows, words], counts[rows, words]


def object_count_head(model, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """Stage 2's training-only head of :func:`object_count_loss` (``[..., d] -> [..., max_objects + 1]``,
    initialised from ``seed``; kept in the stage's checkpoints, not in the codec) and the word table
    it reads (:func:`~simulator.models.objects.word_attribute_table`), both on the model's device.
    ValueError when the tokenizer names no attribute value as one word."""
    from simulator.models.objects import word_attribute_table

    device = model.channel_encoder.linear.weight.device
    words = word_attribute_table(model.tokenizer, model.base_llm.get_input_embeddings().num_embeddings).to(device)
    if not (words[:, 0] >= 0).any():
        raise ValueError("count_weight > 0 but the tokenizer has no colour, shape, size or material word")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(model.config.hidden_size, model.config.max_objects + 1).to(device), words


def count_layer(model, stage) -> int:
    """The LLM layer the object-count loss reads: ``stage.count_layer``, else the middle one."""
    return stage.count_layer or max(1, int(model.base_llm.config.num_hidden_layers) // 2)


def object_count_loss(hidden: torch.Tensor, count_head: nn.Module, rows: torch.Tensor, columns: torch.Tensor,
                      counts: torch.Tensor) -> torch.Tensor:
    """Object-count grounding for object tokens: at every prompt word that names an attribute value,
    ``count_head`` (``[..., d] -> [..., max_objects + 1]``) reads from ``hidden [B, K + L, d]`` (one LLM
    layer's output) how many of the image's objects have that value; cross-entropy against
    :func:`object_count_targets`' ``counts`` at its ``rows, columns``. Scalar float32, 0 when no word counts.

    Trained on answers alone, the LLM learns late which objects a question word refers to (counting,
    existence and comparisons need exactly that); a word's count can only come from attending to the
    matching object tokens. It is the LLM-side counterpart of DeepSC-VQA's grounding loss and, like
    it, needs no scene files.
    """
    if rows.numel() == 0:
        return hidden.sum() * 0.0
    return F.cross_entropy(count_head(hidden[rows, columns]).float(), counts)


def grounding_columns(model, batch: dict, num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """In the right-padded training rows of ``batch`` (rows with an image): ``[B]`` column of the
    first visual token (:meth:`~simulator.models.mllm.M4SCModel.image_columns`) and ``[B]`` column
    whose output predicts the first answer token. The answer follows the prompt and the image in
    either order, so the latter is ``prompt length + num_patches - 1``."""
    device = model.channel_encoder.linear.weight.device
    ids, prompt_lengths = batch["input_ids"].to(device), batch["prompt_lengths"].to(device)
    image_start = model.image_columns(ids, batch["has_image"].to(device), prompt_lengths)
    return image_start, prompt_lengths + num_patches - 1


def grounding_loss(attentions: list[torch.Tensor], targets: torch.Tensor, image_start: torch.Tensor,
                   answer_from: torch.Tensor) -> torch.Tensor:
    """Attention supervision: ``-log`` of the attention mass the position that predicts the answer puts
    on the patches of the objects the question is about, averaged over the given heads and the rows
    that have such objects (0 when none has).

    Args:
        attentions: per supervised head, ``[B, T, T]`` attention probabilities (query x key).
        targets: ``[B, P]``, 1 on the target patches.
        image_start: ``[B]`` column of the first visual token; ``answer_from``: ``[B]`` column whose
            output predicts the first answer token.
    """
    rows = (targets.sum(-1) > 0).nonzero().squeeze(1)
    if rows.numel() == 0:
        return attentions[0].sum() * 0.0
    columns = image_start[rows, None] + torch.arange(targets.shape[1], device=targets.device)
    losses = []
    for attention in attentions:
        on_image = attention[rows, answer_from[rows]].gather(1, columns)  # [n, P]
        losses.append(-torch.log((on_image * targets[rows]).sum(-1) + 1e-6))
    return torch.stack(losses).mean()


def target_hidden_states(model, batch: dict, pixel_values: torch.Tensor | None,
                         has_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced pass of the transformer stack (no LM head): the final hidden states ``[N, d]``
    of the positions that predict a labelled token, and those tokens ``[N]`` int64, in row order."""
    device = model.channel_encoder.linear.weight.device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    prompt_lengths = batch["prompt_lengths"]
    embeds, full_mask, positions = model.build_inputs(ids, mask, pixel_values, has_image, prompt_lengths)
    hidden = model.decoder(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions).last_hidden_state
    labels = model.expand_labels(batch["labels"].to(device), hidden.shape[1], ids, has_image, prompt_lengths)
    targets = labels[:, 1:]
    selected = targets != IGNORE_INDEX
    return hidden[:, :-1][selected], targets[selected]


def joint_loss(model, batch: dict, channel_name: str, snr_db: float, generator: torch.Generator,
               noise_free_weight: float = 0.5, rates: list[int] | None = None,
               channel_target: str = "labels") -> torch.Tensor:
    """Stage 3: Output-token hidden states -> channel encoder -> channel -> decoder -> LM head.

    Loss = CE(through the channel) + ``noise_free_weight`` x CE(noise-free LM head), so the LLM keeps
    its noise-free skill while the codec learns the channel. With several ``rates`` (symbols per token),
    a second CE sends each token at a ``k`` drawn uniformly from them (the nested codec of
    :mod:`simulator.models.channel_codec`), added to the CE at all ``c``. The CE through the channel
    is against the reference tokens (``channel_target`` ``"labels"``) or against the token the
    noise-free head picks at each position (``"bs"``: what the BS would say).
    """
    device = model.channel_encoder.linear.weight.device
    pixel_values, has_image = pixel_values_of(batch, device)
    token_hidden, token_targets = target_hidden_states(model, batch, pixel_values, has_image)
    clean_logits = model.logits(token_hidden).float() if noise_free_weight or channel_target == "bs" else None
    through_targets = clean_logits.detach().argmax(-1) if channel_target == "bs" else token_targets
    through = joint_channel_loss(model, token_hidden, through_targets, channel_name, snr_db, generator, rates)
    if noise_free_weight == 0:
        return through
    return through + noise_free_weight * F.cross_entropy(clean_logits, token_targets)


def joint_channel_loss(model, token_hidden: torch.Tensor, token_targets: torch.Tensor, channel_name: str,
                       snr_db: float, generator: torch.Generator, rates: list[int] | None = None,
                       words: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`joint_loss`'s CE through the channel of ``token_hidden [N, d]`` against ``token_targets
    [N]``: at all ``c`` symbols, plus at a ``k`` per token drawn from ``rates`` when there are several.
    With ``words`` (ascending word ids holding every target) the softmax runs over those words only
    (:mod:`simulator.training.token_pool`)."""
    through = _channel_loss(model, token_hidden, token_targets, None, channel_name, snr_db, generator, words)
    if rates and len(rates) > 1:
        # Sandwich rule of slimmable networks: the full rate every step plus one random k per token.
        # Random k alone cost the full rate 3.4 points of noise-free VQA (0.728 -> 0.694, model card).
        token_rates = _random_rates(rates, token_hidden.shape[0], generator, token_hidden.device)
        through = through + _channel_loss(model, token_hidden, token_targets, token_rates, channel_name, snr_db,
                                          generator, words)
    return through


def set_channel_rates(model, stage_name: str, rates: list[int] | None, short_codes: list[int] | None = None,
                      seed: int = 0) -> None:
    """The rates a stage makes the codec serve (ValueError, one line, when they cannot be):
    ``joint`` sets the nested codec's rates; ``rates`` adds its ``rates`` (each with a decoder of its
    own) and ``short_codes`` (each with an encoder and a decoder of its own) to them
    (:mod:`simulator.models.channel_codec`)."""
    from dataclasses import replace

    from simulator.models.channel_codec import add_short_codes
    from simulator.models.config import check_channel_rates

    config = model.config
    c = config.channel_symbols_per_token
    if stage_name == "joint" and rates is not None:
        config.channel_rates = check_channel_rates(rates, c)
    elif stage_name == "rates":
        rates, short_codes = list(rates or []), list(short_codes or [])
        for kind, chosen in (("rate decoders", rates), ("short codes", short_codes)):
            if any(isinstance(k, bool) or not 1 <= k < c for k in chosen):
                raise ValueError(f"{kind} are for 1 <= k < c = {c}, got {chosen}")
        # The codec config checks the result (a rate has a decoder or a short code, not both).
        grown = replace(config, channel_rates=sorted(set(config.rates) | set(rates) | set(short_codes)),
                        channel_rate_decoders=sorted(set(config.channel_rate_decoders) | set(rates)),
                        channel_short_codes=sorted(set(config.channel_short_codes) | set(short_codes)))
        config.channel_rates = grown.channel_rates
        config.channel_rate_decoders, config.channel_short_codes = grown.channel_rate_decoders, grown.channel_short_codes
        model.channel_decoder.add_rate_decoders(config.channel_rate_decoders)
        add_short_codes(model.channel_encoder, model.channel_decoder, config.channel_short_codes,
                        config.channel_short_code_width, seed)


def rate_code_loss(model, batch: dict, channel_name: str, snr_db: float, generator: torch.Generator,
                   rates: list[int]) -> torch.Tensor:
    """Stage ``rates``: CE of the output tokens sent at a ``k`` drawn per token from ``rates`` (the
    stage's rate decoders and short codes) and read at that ``k``. The LLM is frozen and runs without
    a graph; only the rate decoders and short codes learn."""
    device = model.channel_encoder.linear.weight.device
    pixel_values, has_image = pixel_values_of(batch, device)
    with torch.no_grad():
        token_hidden, token_targets = target_hidden_states(model, batch, pixel_values, has_image)
    return rate_channel_loss(model, token_hidden, token_targets, channel_name, snr_db, generator, rates)


def rate_channel_loss(model, token_hidden: torch.Tensor, token_targets: torch.Tensor, channel_name: str,
                      snr_db: float, generator: torch.Generator, rates: list[int],
                      words: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`rate_code_loss` on given ``token_hidden [N, d]`` and ``token_targets [N]`` (``words``: as
    :func:`joint_channel_loss`)."""
    token_rates = _random_rates(rates, token_hidden.shape[0], generator, token_hidden.device)
    return _channel_loss(model, token_hidden, token_targets, token_rates, channel_name, snr_db, generator, words)


def _random_rates(rates: list[int], count: int, generator: torch.Generator, device) -> torch.Tensor:
    """``[count]`` int64: one of ``rates`` per token, uniformly."""
    choice = torch.randint(len(rates), (count,), generator=generator)
    return torch.tensor(rates, device=device)[choice.to(device)]


def decoded_through_channel(model, token_hidden: torch.Tensor, token_rates: torch.Tensor | None, channel_name: str,
                            snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """``token_hidden [N, d]`` sent at ``token_rates [N]`` (None: all ``c``) through the channel, one
    fade per token, and read by the user's channel decoder: ``[N, d]``, the LM head's input."""
    symbols = model.channel_encoder(token_hidden, token_rates)  # [N, c]
    received = semantic_channel(channel_name)(symbols.unsqueeze(1), snr_db_to_no(snr_db), generator).x_hat.squeeze(1)
    return model.channel_decoder(received, token_rates)


def _channel_loss(model, token_hidden: torch.Tensor, token_targets: torch.Tensor, token_rates: torch.Tensor | None,
                  channel_name: str, snr_db: float, generator: torch.Generator,
                  words: torch.Tensor | None = None) -> torch.Tensor:
    """CE of ``token_hidden [N, d]`` sent at ``token_rates [N]`` (None: all ``c``) through the channel
    (one fade per token) and read by the user's channel decoder and LM head (over ``words`` only, if
    given: ascending ids that hold every target)."""
    decoded = decoded_through_channel(model, token_hidden, token_rates, channel_name, snr_db, generator)
    if words is None:
        return F.cross_entropy(model.logits(decoded).float(), token_targets)
    return F.cross_entropy(model.logits(decoded, words).float(), torch.searchsorted(words, token_targets))


def draw_channel(stage, generator: torch.Generator) -> tuple[str, float]:
    """A stage-3 batch's channel and SNR (dB): uniform over ``stage.snr_db``, then one of ``stage.channels``."""
    low, high = stage.snr_db
    snr_db = low + (high - low) * float(torch.rand((), generator=generator))
    return stage.channels[int(torch.randint(len(stage.channels), (1,), generator=generator))], snr_db


def right_align_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Move left padding to the right: ``[pad pad a b]`` -> ``[a b pad pad]`` (SigLIP pools the last position)."""
    order = torch.argsort((ids == pad_id).to(torch.int8), dim=1, stable=True)
    return torch.gather(ids, 1, order)
