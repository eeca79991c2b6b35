"""The tailored MLLM of M4SC (the paper's Fig. 2): SigLIP vision encoder -> KAN projector ->
causal LM (Gemma 2 in the paper) with LoRA, plus the channel encoder/decoder.

Input layout of one sample (image tasks): ``[P visual tokens][<bos> prompt ...]``, or with
``config.image_position == "after_prompt"`` ``[<bos> prompt ...][P visual tokens]``; text-only
tasks leave the ``P`` visual slots masked out (at the front, in both layouts). Prompts are
left-padded, so a batch is ``[batch, P + L, d]`` and the newest token always sits at the last
position (what cached generation needs). Position ids come from the attention mask, so masked
slots do not shift them. ``P`` is every patch, or with ``visual_tokens = "objects"``
``max_objects x tokens_per_object`` slots, ``tokens_per_object`` for each object the vision
encoder's object-centre head finds (slots it leaves empty are masked out like padding).

The semantic vector of output token ``t`` is the LLM's final hidden state (after its last norm)
at the step that predicted ``t``: ``argmax(lm_head(h_t)) = t``. That is what crosses the air.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from simulator.models.channel_codec import ChannelDecoder, ChannelEncoder
from simulator.models.config import CodecConfig
from simulator.models.kan import KANProjector, MLPProjector
from simulator.models.objects import OBJECT_CLASSES, detect_objects, object_attribute_probabilities, object_features

__all__ = ["M4SCModel", "Generation", "build_llm", "build_vision", "splice"]


def splice(base: torch.Tensor, inserted: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """Insert ``inserted [batch, P, ...]`` into ``base [batch, L, ...]`` before column ``at[b]`` of
    each row: ``[batch, L + P, ...]`` (``at = 0``: in front; ``at = L``: at the end)."""
    batch, length = base.shape[:2]
    width = inserted.shape[1]
    columns = torch.arange(length + width, device=base.device).expand(batch, -1)
    start = at.view(batch, 1)
    from_inserted = (columns >= start) & (columns < start + width)
    base_index = torch.where(columns < start, columns, columns - width).clamp(0, length - 1)
    inserted_index = (columns - start).clamp(0, width - 1)
    trailing = base.shape[2:]

    def take(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        index = index.view(batch, -1, *([1] * len(trailing))).expand(batch, -1, *trailing)
        return source.gather(1, index)

    mask = from_inserted.view(batch, -1, *([1] * len(trailing)))
    return torch.where(mask, take(inserted, inserted_index), take(base, base_index))


def _cache_argument(decoder: nn.Module) -> str:
    """The KV-cache keyword (and output field) of a ``transformers`` decoder: ``cache`` from
    transformers 5.24 on, which deprecates ``past_key_values``, the name before."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def build_vision(config: CodecConfig) -> nn.Module:
    """``transformers.SiglipVisionModel`` from ``config.vision`` (pretrained from ``vision_path`` if set)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if config.vision_path:
        return SiglipVisionModel.from_pretrained(config.vision_path, local_files_only=True)
    return SiglipVisionModel(SiglipVisionConfig(**config.vision))


def build_llm(config: CodecConfig) -> nn.Module:
    """A ``transformers`` causal LM of ``config.llm["model_type"]`` (pretrained from ``llm_path`` if set)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if config.llm_path:
        from simulator.models.pretrained import resolve_llm_path

        folder = resolve_llm_path(config.llm_path)
        # The class is the one the folder's config.json names (Gemma2ForCausalLM, Gemma3ForCausalLM, ...).
        capped = config.llm.get("attn_logit_softcapping") is not None
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar would break the one-line stderr of commands
        try:
            return AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32,
                                                        attn_implementation="eager" if capped else "sdpa")
        finally:
            if shown:
                hf_logging.enable_progress_bar()
    kwargs = dict(config.llm)
    model_type = kwargs.pop("model_type")
    llm_config = AutoConfig.for_model(model_type, **kwargs)
    # Gemma 2 soft-caps attention logits, which only the eager kernel implements.
    llm_config._attn_implementation = "eager"
    return AutoModelForCausalLM.from_config(llm_config)


def _apply_lora(llm: nn.Module, config: CodecConfig) -> nn.Module:
    import warnings

    from peft import LoraConfig, get_peft_model

    lora = config.lora
    present = {name.rsplit(".", 1)[-1] for name, _ in llm.named_modules()}
    targets = [t for t in lora.target_modules if t in present]
    if not targets:
        raise ValueError(f"none of the LoRA target modules {list(lora.target_modules)} exist in the LLM")
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
    with warnings.catch_warnings():
        # peft calls a transformers method that transformers 5 marks deprecated; nothing for users to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(llm, peft_config)


@dataclass
class Generation:
    """Greedy generation of a batch of users' tasks.

    Attributes:
        tokens: ``[batch, T]`` int64 output tokens (EOS and everything after it are padding).
        token_mask: ``[batch, T]`` bool, True for the tokens of the answer (EOS excluded).
        hidden: ``[batch, T, d]`` float semantic vectors, ``argmax(lm_head(hidden)) = tokens``.
    """

    tokens: torch.Tensor
    token_mask: torch.Tensor
    hidden: torch.Tensor


class M4SCModel(nn.Module):
    """Vision encoder, projector, LLM (optionally with LoRA) and channel codec.

    Args:
        config: the architecture.
        tokenizer: a ``transformers`` tokenizer with ``<bos>``/``<eos>``/``<pad>``, left padding.
    """

    def __init__(self, config: CodecConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.vision = build_vision(config)
        vision_dim = int(self.vision.config.hidden_size)
        d = config.hidden_size
        width = d * config.tokens_per_object
        if config.projector.kind == "kan":
            p = config.projector
            self.projector = KANProjector(vision_dim, width, p.hidden_dim, p.grid_size, p.order, p.grid_range)
        else:
            self.projector = MLPProjector(vision_dim, width, config.projector.hidden_dim)
        llm = build_llm(config)
        self.llm = _apply_lora(llm, config) if config.lora is not None else llm
        c, short, width = config.channel_symbols_per_token, config.channel_short_codes, config.channel_short_code_width
        self.channel_encoder = ChannelEncoder(d, c, short, width)
        self.channel_decoder = ChannelDecoder(d, c, config.channel_rate_decoders, short, width)
        # A frozen LM head's copy in a training stage's autocast dtype (simulator.training.precision); not saved.
        self.head_cast: torch.Tensor | None = None
        if config.visual_tokens == "objects":
            # Trained in stage 0 with the scene-graph labels (it is the stage's per-patch head), then
            # used to pick the object tokens; the position table trains with the projector.
            self.object_head = nn.Linear(vision_dim, sum(OBJECT_CLASSES))
            self.object_position = nn.Embedding(config.num_patches, d)
            nn.init.normal_(self.object_position.weight, std=0.02)
            if config.object_attributes:
                # Zero at first: a codec gains the embedding without changing what it already does.
                self.object_attributes = nn.Linear(sum(OBJECT_CLASSES), d, bias=False)
                nn.init.zeros_(self.object_attributes.weight)

    # ---- pieces of the LLM -------------------------------------------------------------------
    @property
    def base_llm(self) -> nn.Module:
        """The causal LM without the peft wrapper."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    @property
    def decoder(self) -> nn.Module:
        """The transformer stack: ``inputs_embeds -> last_hidden_state`` (after the final norm)."""
        return self.base_llm.get_decoder()

    @property
    def lm_head(self) -> nn.Module:
        return self.base_llm.get_output_embeddings()

    def logits(self, hidden: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        """LM head on final hidden states ``[..., d] -> [..., vocab]`` (with the model's soft-cap, if any);
        with ``words [V']`` (word ids) only those words' logits, ``[..., V']``."""
        weight = self.lm_head.weight if self.head_cast is None else self.head_cast
        bias = self.lm_head.bias
        if words is not None:
            weight, bias = weight[words], None if bias is None else bias[words]
        logits = F.linear(hidden.to(weight.dtype), weight, bias)
        cap = getattr(self.base_llm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @property
    def lora_merged(self) -> bool:
        """Whether the LoRA adapters are folded into the base weights (see :meth:`merge_lora`)."""
        return any(getattr(module, "merged", False) for module in self.llm.modules() if hasattr(module, "lora_A"))

    def merge_lora(self) -> "M4SCModel":
        """Fold the adapters into the base weights, ``W + (alpha / r) B A`` (peft's ``merge_adapter``),
        for inference: each adapted layer then runs one matmul instead of three. On the CPU the
        rank-r products are the slowest matmuls of a pass for their FLOPs. The outputs agree with the
        unmerged model to float rounding (tests pin equal tokens). A merged model is not saved
        (:func:`~simulator.models.checkpoint.save_codec` refuses) nor trained."""
        if self.config.lora is not None and not self.lora_merged:
            self.llm.merge_adapter()
        return self

    # ---- inputs ------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, H, W]`` float in [-1, 1] -> ``[batch, P, d]`` visual tokens in the LLM's space."""
        return self.projector(self.vision_features(pixel_values))

    def detect_objects(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`detect_objects` with this codec's head and ``max_objects``."""
        return detect_objects(self.object_head, features, self.config.max_objects)

    def object_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`object_features` with this codec's head and ``max_objects``."""
        return object_features(self.object_head, features, self.config.max_objects)

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, H, W]`` float in [-1, 1] -> the vision encoder's patch features ``[batch, P, d_vision]``."""
        return self.vision(pixel_values=pixel_values).last_hidden_state

    def image_tokens(self, pixel_values: torch.Tensor,
                     vision_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[batch, 3, H, W]`` -> visual tokens ``[batch, K, d]`` and which are real ``[batch, K]`` bool:
        every patch (``visual_tokens="patches"``, all real) or the detected objects' patches (``tokens_per_object`` tokens each, K = ``max_objects`` x that), each
        projected and given its position embedding, plus with ``object_attributes`` the embedding of
        the head's attribute probabilities (``"objects"``; empty slots are zero). ``vision_features``:
        these pixels' :meth:`vision_features`, when the caller has them already (the encoder then does not
        run)."""
        features = self.vision_features(pixel_values) if vision_features is None else vision_features
        if self.config.visual_tokens == "patches":
            tokens = self.projector(features)
            return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        picked, patches, found = self.object_features(features)
        tokens = self.object_words(picked).unflatten(-1, (self.config.tokens_per_object, -1))  # [batch, K, k, d]
        tokens = tokens + self.object_position(patches).unsqueeze(2)
        if self.config.object_attributes:
            tokens = tokens + self.object_attributes(object_attribute_probabilities(self.object_head, picked)).unsqueeze(2)
        tokens = (tokens * found[..., None, None].to(tokens.dtype)).flatten(1, 2)
        return tokens, found.repeat_interleave(self.config.tokens_per_object, dim=1)

    def object_words(self, picked: torch.Tensor) -> torch.Tensor:
        """The projector on objects' features ``[batch, K, D]``: ``[batch, K, tokens_per_object * d]``,
        before position embeddings (what stage ``anchor`` pulls towards the LLM's word embeddings)."""
        return self.projector(picked)

    def build_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     pixel_values: torch.Tensor | None = None, has_image: torch.Tensor | None = None,
                     prompt_lengths: torch.Tensor | None = None, vision_features: torch.Tensor | None = None):
        """Splice visual tokens into the text: in front of it, or after each prompt (``image_position``).

        Args:
            input_ids / attention_mask: ``[batch, L]`` prompts (with ``<bos>``): left-padded for
                generation, or right-padded prompt + target for training.
            pixel_values: ``[batch, 3, H, W]`` or None (no sample has an image).
            has_image: ``[batch]`` bool; samples without an image get masked visual slots.
            prompt_lengths: ``[batch]`` int64, the prompt's end in each right-padded training row
                (where ``after_prompt`` puts the image); None: every row's prompt ends at column L.
            vision_features: ``pixel_values``' :meth:`vision_features`, if already computed.

        Returns:
            ``inputs_embeds [batch, P + L, d]``, ``attention_mask [batch, P + L]``,
            ``position_ids [batch, P + L]`` (P = 0 when no image is given, or ``config.ignore_images``).
        """
        text = self.base_llm.get_input_embeddings()(input_ids)
        if pixel_values is None or self.config.ignore_images:
            embeds, mask = text, attention_mask
        else:
            batch = input_ids.shape[0]
            if has_image is None:
                has_image = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
            visual, real = self.image_tokens(pixel_values, vision_features)
            visual = visual.to(text.dtype) * has_image.view(batch, 1, 1).to(text.dtype)
            visual_mask = (real & has_image.view(batch, 1)).to(attention_mask.dtype)
            if self.config.image_position == "before_prompt":
                embeds = torch.cat([visual, text], dim=1)
                mask = torch.cat([visual_mask, attention_mask], dim=1)
            else:
                image_at = self.image_columns(input_ids, has_image, prompt_lengths)
                embeds = splice(text, visual, image_at)
                mask = splice(attention_mask, visual_mask, image_at)
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return embeds, mask, position_ids

    def image_columns(self, input_ids: torch.Tensor, has_image: torch.Tensor,
                      prompt_lengths: torch.Tensor | None) -> torch.Tensor:
        """``[batch]`` columns of ``input_ids`` the visual tokens go before, which are also the columns
        of the first visual token in :meth:`build_inputs`' output: 0 with ``before_prompt``; each
        prompt's end with ``after_prompt``. Rows without an image keep their masked slots at the
        front, where they act as padding (at a prompt's end they would be the position the first
        answer token is predicted from)."""
        batch, length = input_ids.shape
        if self.config.image_position == "before_prompt":
            return torch.zeros(batch, dtype=torch.long, device=input_ids.device)
        if prompt_lengths is None:
            ends = torch.full((batch,), length, dtype=torch.long, device=input_ids.device)
        else:
            ends = prompt_lengths.to(input_ids.device)
        return torch.where(has_image, ends, torch.zeros_like(ends))

    def expand_labels(self, labels: torch.Tensor, length: int, input_ids: torch.Tensor,
                      has_image: torch.Tensor | None = None, prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``labels [batch, L]`` -> ``[batch, length]`` with ``IGNORE_INDEX`` (-100) on the visual slots
        :meth:`build_inputs` added (``length - L`` of them, none when it added none)."""
        added = length - labels.shape[1]
        if added == 0:
            return labels
        slots = labels.new_full((labels.shape[0], added), -100)
        if self.config.image_position == "before_prompt":
            return torch.cat([slots, labels], dim=1)
        if has_image is None:
            has_image = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        return splice(labels, slots, self.image_columns(input_ids, has_image.to(labels.device), prompt_lengths))

    def tokenize(self, prompts: list[str], device=None):
        """Left-padded ``input_ids, attention_mask`` ``[batch, L]`` for a list of prompts."""
        if self.tokenizer is None:
            raise ValueError("the model has no tokenizer")
        batch = self.tokenizer(prompts, padding=True, return_tensors="pt")
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, has_image: torch.Tensor | None = None,
                prompt_lengths: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, vision_features: torch.Tensor | None = None):
        """Teacher-forced pass for training. ``labels [batch, L]`` (-100 = no loss) align with ``input_ids``
        (right-padded prompt + target; ``prompt_lengths [batch]`` where each prompt ends).

        Returns the ``transformers`` causal-LM output (``.loss`` when labels are given, ``.logits``,
        ``.attentions``: per layer ``[batch, heads, P + L, P + L]`` with ``output_attentions``;
        ``.hidden_states``: the embeddings and each layer's output ``[batch, P + L, d]`` with
        ``output_hidden_states``). ``vision_features``: see :meth:`build_inputs`.
        """
        embeds, mask, positions = self.build_inputs(input_ids, attention_mask, pixel_values, has_image, prompt_lengths,
                                                    vision_features)
        if labels is not None:
            labels = self.expand_labels(labels, embeds.shape[1], input_ids, has_image, prompt_lengths)
        return self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, labels=labels,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states)

    # ---- generation --------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 pixel_values: torch.Tensor | None = None, has_image: torch.Tensor | None = None,
                 max_new_tokens: int | None = None, use_cache: bool = True, stop_at_eos: bool = True) -> Generation:
        """Greedy decoding, batched over users, with a KV cache (``use_cache=False``: full recompute).

        Shapes as in :meth:`build_inputs`; returns a :class:`Generation` with ``T = max_new_tokens``.
        ``stop_at_eos=False`` always decodes ``max_new_tokens`` steps (benchmarks: a fixed amount of work).
        """
        max_new_tokens = max_new_tokens or self.config.max_new_tokens
        eos_id = self.tokenizer.eos_token_id if self.tokenizer is not None and stop_at_eos else None
        embeds, mask, positions = self.build_inputs(input_ids, attention_mask, pixel_values, has_image)
        embed_tokens = self.base_llm.get_input_embeddings()
        batch = embeds.shape[0]
        finished = torch.zeros(batch, dtype=torch.bool, device=embeds.device)
        tokens, hidden_states, alive = [], [], []
        past = None
        cache_argument = _cache_argument(self.decoder)
        step_embeds, step_mask, step_positions = embeds, mask, positions
        for _ in range(max_new_tokens):
            if use_cache:
                out = self.decoder(inputs_embeds=step_embeds, attention_mask=step_mask,
                                   position_ids=step_positions, use_cache=True, **{cache_argument: past})
                past = getattr(out, cache_argument)
            else:
                out = self.decoder(inputs_embeds=step_embeds, attention_mask=step_mask,
                                   position_ids=step_positions, use_cache=False)
            hidden = out.last_hidden_state[:, -1]
            next_token = self.logits(hidden).argmax(-1)
            if eos_id is not None:
                finished = finished | (next_token == eos_id)
            tokens.append(next_token)
            hidden_states.append(hidden)
            alive.append(~finished)
            if bool(finished.all()):
                break
            new_embed = embed_tokens(next_token).unsqueeze(1)
            new_position = step_positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if use_cache:
                step_embeds, step_positions = new_embed, new_position
            else:
                step_embeds = torch.cat([step_embeds, new_embed], dim=1)
                step_positions = torch.cat([step_positions, new_position], dim=1)
            step_mask = mask
        token_mask = torch.stack(alive, dim=1)
        tokens = torch.stack(tokens, dim=1)
        if eos_id is not None:
            tokens = torch.where(token_mask, tokens, torch.full_like(tokens, self.tokenizer.pad_token_id))
        return Generation(tokens=tokens, token_mask=token_mask, hidden=torch.stack(hidden_states, dim=1))

    def decode_text(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> list[str]:
        """Texts of ``[batch, T]`` tokens, keeping only the masked-in ones."""
        return [self.tokenizer.decode(row[m].tolist(), skip_special_tokens=True).strip()
                for row, m in zip(tokens, token_mask)]

    # ---- accounting --------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component; ``lora_trainable`` counts only adapter weights."""
        def count(module, trainable_only=False):
            return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

        lora = sum(p.numel() for n, p in self.llm.named_parameters() if "lora_" in n)
        return {
            "vision": count(self.vision),
            "projector": count(self.projector),
            "llm": count(self.llm) - lora,
            "lora_trainable": lora,
            "channel_encoder": count(self.channel_encoder),
            "channel_decoder": count(self.channel_decoder),
        }
